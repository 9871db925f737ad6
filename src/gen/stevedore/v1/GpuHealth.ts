// Original file: proto/stevedore/v1/common.proto

import type { Long } from '@grpc/proto-loader';

export interface GpuHealth {
  'uuid'?: (string);
  'healthy'?: (boolean);
  'problems'?: (string)[];
  'temperatureC'?: (number);
  'eccUncorrectedVolatile'?: (number | string | Long);
  'xids'?: (number)[];
  'checkedMs'?: (number | string | Long);
}

export interface GpuHealth__Output {
  'uuid': (string);
  'healthy': (boolean);
  'problems': (string)[];
  'temperatureC': (number);
  'eccUncorrectedVolatile': (number);
  'xids': (number)[];
  'checkedMs': (number);
}
