// Original file: proto/stevedore/v1/session.proto


export interface Drain {
  'reason'?: (string);
}

export interface Drain__Output {
  'reason': (string);
}
