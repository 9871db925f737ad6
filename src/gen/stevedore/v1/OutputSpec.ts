// Original file: proto/stevedore/v1/common.proto


export interface OutputSpec {
  'path'?: (string);
  'destination'?: (string);
  'endpoint'?: (string);
  'intervalSeconds'?: (number);
}

export interface OutputSpec__Output {
  'path': (string);
  'destination': (string);
  'endpoint': (string);
  'intervalSeconds': (number);
}
