// Original file: proto/stevedore/v1/common.proto


export interface Mount {
  'source'?: (string);
  'target'?: (string);
  'readOnly'?: (boolean);
}

export interface Mount__Output {
  'source': (string);
  'target': (string);
  'readOnly': (boolean);
}
