// Original file: proto/stevedore/v1/common.proto

import type { Gpu as _stevedore_v1_Gpu, Gpu__Output as _stevedore_v1_Gpu__Output } from '../../stevedore/v1/Gpu.ts';
import type { Long } from '@grpc/proto-loader';

export interface Inventory {
  'hostname'?: (string);
  'cpuModel'?: (string);
  'cpuCores'?: (number);
  'memoryBytes'?: (number | string | Long);
  'diskFreeBytes'?: (number | string | Long);
  'diskTotalBytes'?: (number | string | Long);
  'os'?: (string);
  'kernel'?: (string);
  'arch'?: (string);
  'gpus'?: (_stevedore_v1_Gpu)[];
}

export interface Inventory__Output {
  'hostname': (string);
  'cpuModel': (string);
  'cpuCores': (number);
  'memoryBytes': (number);
  'diskFreeBytes': (number);
  'diskTotalBytes': (number);
  'os': (string);
  'kernel': (string);
  'arch': (string);
  'gpus': (_stevedore_v1_Gpu__Output)[];
}
