// Original file: proto/stevedore/v1/common.proto


export interface CheckpointSpec {
  'path'?: (string);
  'destination'?: (string);
  'endpoint'?: (string);
  'rule'?: (string);
  'marker'?: (string);
  'quiescenceSeconds'?: (number);
  'keep'?: (number);
  'keepEvery'?: (number);
  'signal'?: (string);
  'resume'?: (boolean);
}

export interface CheckpointSpec__Output {
  'path': (string);
  'destination': (string);
  'endpoint': (string);
  'rule': (string);
  'marker': (string);
  'quiescenceSeconds': (number);
  'keep': (number);
  'keepEvery': (number);
  'signal': (string);
  'resume': (boolean);
}
