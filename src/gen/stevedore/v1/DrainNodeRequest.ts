// Original file: proto/stevedore/v1/control.proto


export interface DrainNodeRequest {
  'nodeId'?: (string);
  'reason'?: (string);
  'deadlineSeconds'?: (number);
}

export interface DrainNodeRequest__Output {
  'nodeId': (string);
  'reason': (string);
  'deadlineSeconds': (number);
}
