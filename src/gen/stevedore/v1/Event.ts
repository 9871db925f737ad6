// Original file: proto/stevedore/v1/session.proto

import type { AttemptStateChanged as _stevedore_v1_AttemptStateChanged, AttemptStateChanged__Output as _stevedore_v1_AttemptStateChanged__Output } from '../../stevedore/v1/AttemptStateChanged.ts';
import type { AttemptExited as _stevedore_v1_AttemptExited, AttemptExited__Output as _stevedore_v1_AttemptExited__Output } from '../../stevedore/v1/AttemptExited.ts';
import type { LogChunk as _stevedore_v1_LogChunk, LogChunk__Output as _stevedore_v1_LogChunk__Output } from '../../stevedore/v1/LogChunk.ts';
import type { CheckpointCommitted as _stevedore_v1_CheckpointCommitted, CheckpointCommitted__Output as _stevedore_v1_CheckpointCommitted__Output } from '../../stevedore/v1/CheckpointCommitted.ts';
import type { CheckpointRestored as _stevedore_v1_CheckpointRestored, CheckpointRestored__Output as _stevedore_v1_CheckpointRestored__Output } from '../../stevedore/v1/CheckpointRestored.ts';
import type { PreemptionNotice as _stevedore_v1_PreemptionNotice, PreemptionNotice__Output as _stevedore_v1_PreemptionNotice__Output } from '../../stevedore/v1/PreemptionNotice.ts';
import type { DrainReport as _stevedore_v1_DrainReport, DrainReport__Output as _stevedore_v1_DrainReport__Output } from '../../stevedore/v1/DrainReport.ts';
import type { AttemptProgress as _stevedore_v1_AttemptProgress, AttemptProgress__Output as _stevedore_v1_AttemptProgress__Output } from '../../stevedore/v1/AttemptProgress.ts';
import type { Long } from '@grpc/proto-loader';

export interface Event {
  'eventId'?: (number | string | Long);
  'timeMs'?: (number | string | Long);
  'jobId'?: (string);
  'attempt'?: (number);
  'stateChanged'?: (_stevedore_v1_AttemptStateChanged | null);
  'exited'?: (_stevedore_v1_AttemptExited | null);
  'logs'?: (_stevedore_v1_LogChunk | null);
  'checkpointCommitted'?: (_stevedore_v1_CheckpointCommitted | null);
  'checkpointRestored'?: (_stevedore_v1_CheckpointRestored | null);
  'preemptionNotice'?: (_stevedore_v1_PreemptionNotice | null);
  'drainReport'?: (_stevedore_v1_DrainReport | null);
  'progress'?: (_stevedore_v1_AttemptProgress | null);
  'body'?: "stateChanged"|"exited"|"logs"|"checkpointCommitted"|"checkpointRestored"|"preemptionNotice"|"drainReport"|"progress";
}

export interface Event__Output {
  'eventId': (number);
  'timeMs': (number);
  'jobId': (string);
  'attempt': (number);
  'stateChanged'?: (_stevedore_v1_AttemptStateChanged__Output | null);
  'exited'?: (_stevedore_v1_AttemptExited__Output | null);
  'logs'?: (_stevedore_v1_LogChunk__Output | null);
  'checkpointCommitted'?: (_stevedore_v1_CheckpointCommitted__Output | null);
  'checkpointRestored'?: (_stevedore_v1_CheckpointRestored__Output | null);
  'preemptionNotice'?: (_stevedore_v1_PreemptionNotice__Output | null);
  'drainReport'?: (_stevedore_v1_DrainReport__Output | null);
  'progress'?: (_stevedore_v1_AttemptProgress__Output | null);
  'body'?: "stateChanged"|"exited"|"logs"|"checkpointCommitted"|"checkpointRestored"|"preemptionNotice"|"drainReport"|"progress";
}
