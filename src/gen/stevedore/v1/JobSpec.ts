// Original file: proto/stevedore/v1/common.proto

import type { Resources as _stevedore_v1_Resources, Resources__Output as _stevedore_v1_Resources__Output } from '../../stevedore/v1/Resources.ts';
import type { Mount as _stevedore_v1_Mount, Mount__Output as _stevedore_v1_Mount__Output } from '../../stevedore/v1/Mount.ts';
import type { Ulimit as _stevedore_v1_Ulimit, Ulimit__Output as _stevedore_v1_Ulimit__Output } from '../../stevedore/v1/Ulimit.ts';
import type { HostMount as _stevedore_v1_HostMount, HostMount__Output as _stevedore_v1_HostMount__Output } from '../../stevedore/v1/HostMount.ts';
import type { CheckpointSpec as _stevedore_v1_CheckpointSpec, CheckpointSpec__Output as _stevedore_v1_CheckpointSpec__Output } from '../../stevedore/v1/CheckpointSpec.ts';
import type { InputSpec as _stevedore_v1_InputSpec, InputSpec__Output as _stevedore_v1_InputSpec__Output } from '../../stevedore/v1/InputSpec.ts';
import type { OutputSpec as _stevedore_v1_OutputSpec, OutputSpec__Output as _stevedore_v1_OutputSpec__Output } from '../../stevedore/v1/OutputSpec.ts';
import type { RestartPolicy as _stevedore_v1_RestartPolicy, RestartPolicy__Output as _stevedore_v1_RestartPolicy__Output } from '../../stevedore/v1/RestartPolicy.ts';

export interface JobSpec {
  'name'?: (string);
  'image'?: (string);
  'command'?: (string)[];
  'env'?: ({[key: string]: string});
  'resources'?: (_stevedore_v1_Resources | null);
  'mounts'?: (_stevedore_v1_Mount)[];
  'ulimits'?: (_stevedore_v1_Ulimit)[];
  'hostIpc'?: (boolean);
  'hostNetwork'?: (boolean);
  'stopSignal'?: (string);
  'stopGraceSeconds'?: (number);
  'pullPolicy'?: (string);
  'workingDir'?: (string);
  'privileged'?: (boolean);
  'capabilities'?: (string)[];
  'hostMounts'?: (_stevedore_v1_HostMount)[];
  'devices'?: (string)[];
  'checkpoint'?: (_stevedore_v1_CheckpointSpec | null);
  'input'?: (_stevedore_v1_InputSpec | null);
  'output'?: (_stevedore_v1_OutputSpec | null);
  'restart'?: (_stevedore_v1_RestartPolicy | null);
}

export interface JobSpec__Output {
  'name': (string);
  'image': (string);
  'command': (string)[];
  'env': ({[key: string]: string});
  'resources': (_stevedore_v1_Resources__Output | null);
  'mounts': (_stevedore_v1_Mount__Output)[];
  'ulimits': (_stevedore_v1_Ulimit__Output)[];
  'hostIpc': (boolean);
  'hostNetwork': (boolean);
  'stopSignal': (string);
  'stopGraceSeconds': (number);
  'pullPolicy': (string);
  'workingDir': (string);
  'privileged': (boolean);
  'capabilities': (string)[];
  'hostMounts': (_stevedore_v1_HostMount__Output)[];
  'devices': (string)[];
  'checkpoint': (_stevedore_v1_CheckpointSpec__Output | null);
  'input': (_stevedore_v1_InputSpec__Output | null);
  'output': (_stevedore_v1_OutputSpec__Output | null);
  'restart': (_stevedore_v1_RestartPolicy__Output | null);
}
