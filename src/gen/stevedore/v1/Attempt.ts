// Original file: proto/stevedore/v1/control.proto

import type { AttemptState as _stevedore_v1_AttemptState, AttemptState__Output as _stevedore_v1_AttemptState__Output } from '../../stevedore/v1/AttemptState.ts';
import type { AttemptProgress as _stevedore_v1_AttemptProgress, AttemptProgress__Output as _stevedore_v1_AttemptProgress__Output } from '../../stevedore/v1/AttemptProgress.ts';
import type { Long } from '@grpc/proto-loader';

export interface Attempt {
  'attempt'?: (number);
  'nodeId'?: (string);
  'state'?: (_stevedore_v1_AttemptState);
  'gpuUuids'?: (string)[];
  'exitCode'?: (number);
  'hasExitCode'?: (boolean);
  'message'?: (string);
  'startedMs'?: (number | string | Long);
  'endedMs'?: (number | string | Long);
  'restoreReported'?: (boolean);
  'restoredCheckpointId'?: (string);
  'restoredStep'?: (number | string | Long);
  'restoredBytes'?: (number | string | Long);
  'restoreDurationMs'?: (number | string | Long);
  'restoreSkipped'?: (string)[];
  'resume'?: (boolean);
  'hostname'?: (string);
  'zone'?: (string);
  'region'?: (string);
  'preemptionNoticeId'?: (string);
  'preemptionSource'?: (string);
  'preemptionKind'?: (string);
  'preemptionDeadlineMs'?: (number | string | Long);
  'drainReported'?: (boolean);
  'finalCheckpointId'?: (string);
  'finalStep'?: (number | string | Long);
  'finalCheckpointIsNew'?: (boolean);
  'finalCommittedMs'?: (number | string | Long);
  'drainMarginMs'?: (number | string | Long);
  'progress'?: (_stevedore_v1_AttemptProgress | null);
}

export interface Attempt__Output {
  'attempt': (number);
  'nodeId': (string);
  'state': (_stevedore_v1_AttemptState__Output);
  'gpuUuids': (string)[];
  'exitCode': (number);
  'hasExitCode': (boolean);
  'message': (string);
  'startedMs': (number);
  'endedMs': (number);
  'restoreReported': (boolean);
  'restoredCheckpointId': (string);
  'restoredStep': (number);
  'restoredBytes': (number);
  'restoreDurationMs': (number);
  'restoreSkipped': (string)[];
  'resume': (boolean);
  'hostname': (string);
  'zone': (string);
  'region': (string);
  'preemptionNoticeId': (string);
  'preemptionSource': (string);
  'preemptionKind': (string);
  'preemptionDeadlineMs': (number);
  'drainReported': (boolean);
  'finalCheckpointId': (string);
  'finalStep': (number);
  'finalCheckpointIsNew': (boolean);
  'finalCommittedMs': (number);
  'drainMarginMs': (number);
  'progress': (_stevedore_v1_AttemptProgress__Output | null);
}
