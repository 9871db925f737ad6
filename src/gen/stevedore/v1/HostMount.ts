// Original file: proto/stevedore/v1/common.proto


export interface HostMount {
  'hostPath'?: (string);
  'target'?: (string);
  'readOnly'?: (boolean);
}

export interface HostMount__Output {
  'hostPath': (string);
  'target': (string);
  'readOnly': (boolean);
}
