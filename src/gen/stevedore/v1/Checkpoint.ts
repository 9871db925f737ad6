// Original file: proto/stevedore/v1/control.proto

import type { Long } from '@grpc/proto-loader';

export interface Checkpoint {
  'jobId'?: (string);
  'attempt'?: (number);
  'nodeId'?: (string);
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

export interface Checkpoint__Output {
  'jobId': (string);
  'attempt': (number);
  'nodeId': (string);
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
