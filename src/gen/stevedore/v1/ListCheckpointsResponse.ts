// Original file: proto/stevedore/v1/control.proto

import type { Checkpoint as _stevedore_v1_Checkpoint, Checkpoint__Output as _stevedore_v1_Checkpoint__Output } from '../../stevedore/v1/Checkpoint.ts';

export interface ListCheckpointsResponse {
  'checkpoints'?: (_stevedore_v1_Checkpoint)[];
}

export interface ListCheckpointsResponse__Output {
  'checkpoints': (_stevedore_v1_Checkpoint__Output)[];
}
