// Original file: proto/stevedore/v1/session.proto

import type { StartJob as _stevedore_v1_StartJob, StartJob__Output as _stevedore_v1_StartJob__Output } from '../../stevedore/v1/StartJob.ts';
import type { StopJob as _stevedore_v1_StopJob, StopJob__Output as _stevedore_v1_StopJob__Output } from '../../stevedore/v1/StopJob.ts';
import type { Drain as _stevedore_v1_Drain, Drain__Output as _stevedore_v1_Drain__Output } from '../../stevedore/v1/Drain.ts';

export interface Command {
  'commandId'?: (string);
  'startJob'?: (_stevedore_v1_StartJob | null);
  'stopJob'?: (_stevedore_v1_StopJob | null);
  'drain'?: (_stevedore_v1_Drain | null);
  'body'?: "startJob"|"stopJob"|"drain";
}

export interface Command__Output {
  'commandId': (string);
  'startJob'?: (_stevedore_v1_StartJob__Output | null);
  'stopJob'?: (_stevedore_v1_StopJob__Output | null);
  'drain'?: (_stevedore_v1_Drain__Output | null);
  'body'?: "startJob"|"stopJob"|"drain";
}
