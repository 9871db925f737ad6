// Original file: proto/stevedore/v1/common.proto

import type { GpuHealth as _stevedore_v1_GpuHealth, GpuHealth__Output as _stevedore_v1_GpuHealth__Output } from '../../stevedore/v1/GpuHealth.ts';
import type { Long } from '@grpc/proto-loader';

export interface Gpu {
  'index'?: (number);
  'uuid'?: (string);
  'name'?: (string);
  'memoryMib'?: (number | string | Long);
  'driverVersion'?: (string);
  'pciBusId'?: (string);
  'health'?: (_stevedore_v1_GpuHealth | null);
}

export interface Gpu__Output {
  'index': (number);
  'uuid': (string);
  'name': (string);
  'memoryMib': (number);
  'driverVersion': (string);
  'pciBusId': (string);
  'health': (_stevedore_v1_GpuHealth__Output | null);
}
