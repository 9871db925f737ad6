// Original file: proto/stevedore/v1/control.proto


export interface StreamLogsRequest {
  'jobId'?: (string);
  'follow'?: (boolean);
}

export interface StreamLogsRequest__Output {
  'jobId': (string);
  'follow': (boolean);
}
