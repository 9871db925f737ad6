// Original file: proto/stevedore/v1/common.proto


export interface Error {
  'code'?: (string);
  'message'?: (string);
}

export interface Error__Output {
  'code': (string);
  'message': (string);
}
