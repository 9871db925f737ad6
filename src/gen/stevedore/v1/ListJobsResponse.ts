// Original file: proto/stevedore/v1/control.proto

import type { Job as _stevedore_v1_Job, Job__Output as _stevedore_v1_Job__Output } from '../../stevedore/v1/Job.ts';

export interface ListJobsResponse {
  'jobs'?: (_stevedore_v1_Job)[];
}

export interface ListJobsResponse__Output {
  'jobs': (_stevedore_v1_Job__Output)[];
}
