// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface CheckpointCommitted {
  'checkpointId'?: (string);
  'name'?: (string);
  'step'?: (number | string | Long);
  'totalBytes'?: (number | string | Long);
  'uploadedBytes'?: (number | string | Long);
  'files'?: (number);
  'lastWriteMs'?: (number | string | Long);
  'committedMs'?: (number | string | Long);
  'timeToCommitMs'?: (number | string | Long);
  'manifestKey'?: (string);
}

export interface CheckpointCommitted__Output {
  'checkpointId': (string);
  'name': (string);
  'step': (number);
  'totalBytes': (number);
  'uploadedBytes': (number);
  'files': (number);
  'lastWriteMs': (number);
  'committedMs': (number);
  'timeToCommitMs': (number);
  'manifestKey': (string);
}
