// Original file: proto/stevedore/v1/control.proto

import type { JobSpec as _stevedore_v1_JobSpec, JobSpec__Output as _stevedore_v1_JobSpec__Output } from '../../stevedore/v1/JobSpec.ts';

export interface SubmitJobRequest {
  'spec'?: (_stevedore_v1_JobSpec | null);
}

export interface SubmitJobRequest__Output {
  'spec': (_stevedore_v1_JobSpec__Output | null);
}
