// Original file: proto/stevedore/v1/session.proto

import type { JobSpec as _stevedore_v1_JobSpec, JobSpec__Output as _stevedore_v1_JobSpec__Output } from '../../stevedore/v1/JobSpec.ts';

export interface StartJob {
  'jobId'?: (string);
  'attempt'?: (number);
  'spec'?: (_stevedore_v1_JobSpec | null);
  'resume'?: (boolean);
}

export interface StartJob__Output {
  'jobId': (string);
  'attempt': (number);
  'spec': (_stevedore_v1_JobSpec__Output | null);
  'resume': (boolean);
}
