// Original file: proto/stevedore/v1/common.proto


export interface InputSpec {
  'url'?: (string);
  'endpoint'?: (string);
  'target'?: (string);
  'extract'?: (string);
}

export interface InputSpec__Output {
  'url': (string);
  'endpoint': (string);
  'target': (string);
  'extract': (string);
}
