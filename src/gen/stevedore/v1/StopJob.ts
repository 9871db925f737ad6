// Original file: proto/stevedore/v1/session.proto


export interface StopJob {
  'jobId'?: (string);
  'attempt'?: (number);
  'reason'?: (string);
}

export interface StopJob__Output {
  'jobId': (string);
  'attempt': (number);
  'reason': (string);
}
