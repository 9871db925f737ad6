// Original file: proto/stevedore/v1/session.proto

import type { AttemptState as _stevedore_v1_AttemptState, AttemptState__Output as _stevedore_v1_AttemptState__Output } from '../../stevedore/v1/AttemptState.ts';

export interface AttemptStateChanged {
  'state'?: (_stevedore_v1_AttemptState);
  'message'?: (string);
  'gpuUuids'?: (string)[];
  'containerId'?: (string);
}

export interface AttemptStateChanged__Output {
  'state': (_stevedore_v1_AttemptState__Output);
  'message': (string);
  'gpuUuids': (string)[];
  'containerId': (string);
}
