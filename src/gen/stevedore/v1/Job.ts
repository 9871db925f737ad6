// Original file: proto/stevedore/v1/control.proto

import type { JobSpec as _stevedore_v1_JobSpec, JobSpec__Output as _stevedore_v1_JobSpec__Output } from '../../stevedore/v1/JobSpec.ts';
import type { Attempt as _stevedore_v1_Attempt, Attempt__Output as _stevedore_v1_Attempt__Output } from '../../stevedore/v1/Attempt.ts';
import type { Long } from '@grpc/proto-loader';

export interface Job {
  'jobId'?: (string);
  'state'?: (string);
  'spec'?: (_stevedore_v1_JobSpec | null);
  'message'?: (string);
  'createdMs'?: (number | string | Long);
  'updatedMs'?: (number | string | Long);
  'attempts'?: (_stevedore_v1_Attempt)[];
  'preemptions'?: (number);
  'failures'?: (number);
}

export interface Job__Output {
  'jobId': (string);
  'state': (string);
  'spec': (_stevedore_v1_JobSpec__Output | null);
  'message': (string);
  'createdMs': (number);
  'updatedMs': (number);
  'attempts': (_stevedore_v1_Attempt__Output)[];
  'preemptions': (number);
  'failures': (number);
}
