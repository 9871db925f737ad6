// Original file: proto/stevedore/v1/common.proto


export interface RestartPolicy {
  'maxPreemptions'?: (number);
  'maxFailures'?: (number);
  'retryableExitCodes'?: (number)[];
}

export interface RestartPolicy__Output {
  'maxPreemptions': (number);
  'maxFailures': (number);
  'retryableExitCodes': (number)[];
}
