// Original file: proto/stevedore/v1/session.proto

import type { GpuHealth as _stevedore_v1_GpuHealth, GpuHealth__Output as _stevedore_v1_GpuHealth__Output } from '../../stevedore/v1/GpuHealth.ts';
import type { Long } from '@grpc/proto-loader';

export interface Heartbeat {
  'sentAtMs'?: (number | string | Long);
  'runningAttempts'?: (number);
  'gpuHealth'?: (_stevedore_v1_GpuHealth)[];
}

export interface Heartbeat__Output {
  'sentAtMs': (number);
  'runningAttempts': (number);
  'gpuHealth': (_stevedore_v1_GpuHealth__Output)[];
}
