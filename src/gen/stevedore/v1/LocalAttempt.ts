// Original file: proto/stevedore/v1/agent_local.proto

import type { AttemptState as _stevedore_v1_AttemptState, AttemptState__Output as _stevedore_v1_AttemptState__Output } from '../../stevedore/v1/AttemptState.ts';
import type { Long } from '@grpc/proto-loader';

export interface LocalAttempt {
  'jobId'?: (string);
  'attempt'?: (number);
  'state'?: (_stevedore_v1_AttemptState);
  'gpuUuids'?: (string)[];
  'containerId'?: (string);
  'image'?: (string);
  'startedMs'?: (number | string | Long);
  'logPath'?: (string);
}

export interface LocalAttempt__Output {
  'jobId': (string);
  'attempt': (number);
  'state': (_stevedore_v1_AttemptState__Output);
  'gpuUuids': (string)[];
  'containerId': (string);
  'image': (string);
  'startedMs': (number);
  'logPath': (string);
}
