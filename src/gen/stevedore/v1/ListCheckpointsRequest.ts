// Original file: proto/stevedore/v1/control.proto


export interface ListCheckpointsRequest {
  'jobId'?: (string);
}

export interface ListCheckpointsRequest__Output {
  'jobId': (string);
}
