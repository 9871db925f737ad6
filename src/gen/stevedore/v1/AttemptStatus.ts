// Original file: proto/stevedore/v1/session.proto

import type { AttemptState as _stevedore_v1_AttemptState, AttemptState__Output as _stevedore_v1_AttemptState__Output } from '../../stevedore/v1/AttemptState.ts';

export interface AttemptStatus {
  'jobId'?: (string);
  'attempt'?: (number);
  'state'?: (_stevedore_v1_AttemptState);
  'gpuUuids'?: (string)[];
  'containerId'?: (string);
}

export interface AttemptStatus__Output {
  'jobId': (string);
  'attempt': (number);
  'state': (_stevedore_v1_AttemptState__Output);
  'gpuUuids': (string)[];
  'containerId': (string);
}
