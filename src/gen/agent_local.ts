import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { AgentLocalClient as _stevedore_v1_AgentLocalClient, AgentLocalDefinition as _stevedore_v1_AgentLocalDefinition } from './stevedore/v1/AgentLocal.ts';
import type { AgentStatus as _stevedore_v1_AgentStatus, AgentStatus__Output as _stevedore_v1_AgentStatus__Output } from './stevedore/v1/AgentStatus.ts';
import type { AttemptProgress as _stevedore_v1_AttemptProgress, AttemptProgress__Output as _stevedore_v1_AttemptProgress__Output } from './stevedore/v1/AttemptProgress.ts';
import type { CheckpointSpec as _stevedore_v1_CheckpointSpec, CheckpointSpec__Output as _stevedore_v1_CheckpointSpec__Output } from './stevedore/v1/CheckpointSpec.ts';
import type { Error as _stevedore_v1_Error, Error__Output as _stevedore_v1_Error__Output } from './stevedore/v1/Error.ts';
import type { GetStatusRequest as _stevedore_v1_GetStatusRequest, GetStatusRequest__Output as _stevedore_v1_GetStatusRequest__Output } from './stevedore/v1/GetStatusRequest.ts';
import type { Gpu as _stevedore_v1_Gpu, Gpu__Output as _stevedore_v1_Gpu__Output } from './stevedore/v1/Gpu.ts';
import type { GpuHealth as _stevedore_v1_GpuHealth, GpuHealth__Output as _stevedore_v1_GpuHealth__Output } from './stevedore/v1/GpuHealth.ts';
import type { HostMount as _stevedore_v1_HostMount, HostMount__Output as _stevedore_v1_HostMount__Output } from './stevedore/v1/HostMount.ts';
import type { InputSpec as _stevedore_v1_InputSpec, InputSpec__Output as _stevedore_v1_InputSpec__Output } from './stevedore/v1/InputSpec.ts';
import type { Inventory as _stevedore_v1_Inventory, Inventory__Output as _stevedore_v1_Inventory__Output } from './stevedore/v1/Inventory.ts';
import type { JobSpec as _stevedore_v1_JobSpec, JobSpec__Output as _stevedore_v1_JobSpec__Output } from './stevedore/v1/JobSpec.ts';
import type { LocalAttempt as _stevedore_v1_LocalAttempt, LocalAttempt__Output as _stevedore_v1_LocalAttempt__Output } from './stevedore/v1/LocalAttempt.ts';
import type { LogLine as _stevedore_v1_LogLine, LogLine__Output as _stevedore_v1_LogLine__Output } from './stevedore/v1/LogLine.ts';
import type { Mount as _stevedore_v1_Mount, Mount__Output as _stevedore_v1_Mount__Output } from './stevedore/v1/Mount.ts';
import type { OutputSpec as _stevedore_v1_OutputSpec, OutputSpec__Output as _stevedore_v1_OutputSpec__Output } from './stevedore/v1/OutputSpec.ts';
import type { Resources as _stevedore_v1_Resources, Resources__Output as _stevedore_v1_Resources__Output } from './stevedore/v1/Resources.ts';
import type { RestartPolicy as _stevedore_v1_RestartPolicy, RestartPolicy__Output as _stevedore_v1_RestartPolicy__Output } from './stevedore/v1/RestartPolicy.ts';
import type { Ulimit as _stevedore_v1_Ulimit, Ulimit__Output as _stevedore_v1_Ulimit__Output } from './stevedore/v1/Ulimit.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  stevedore: {
    v1: {
      AgentLocal: SubtypeConstructor<typeof grpc.Client, _stevedore_v1_AgentLocalClient> & { service: _stevedore_v1_AgentLocalDefinition }
      AgentStatus: MessageTypeDefinition<_stevedore_v1_AgentStatus, _stevedore_v1_AgentStatus__Output>
      AttemptProgress: MessageTypeDefinition<_stevedore_v1_AttemptProgress, _stevedore_v1_AttemptProgress__Output>
      AttemptState: EnumTypeDefinition
      CheckpointSpec: MessageTypeDefinition<_stevedore_v1_CheckpointSpec, _stevedore_v1_CheckpointSpec__Output>
      Error: MessageTypeDefinition<_stevedore_v1_Error, _stevedore_v1_Error__Output>
      GetStatusRequest: MessageTypeDefinition<_stevedore_v1_GetStatusRequest, _stevedore_v1_GetStatusRequest__Output>
      Gpu: MessageTypeDefinition<_stevedore_v1_Gpu, _stevedore_v1_Gpu__Output>
      GpuHealth: MessageTypeDefinition<_stevedore_v1_GpuHealth, _stevedore_v1_GpuHealth__Output>
      HostMount: MessageTypeDefinition<_stevedore_v1_HostMount, _stevedore_v1_HostMount__Output>
      InputSpec: MessageTypeDefinition<_stevedore_v1_InputSpec, _stevedore_v1_InputSpec__Output>
      Inventory: MessageTypeDefinition<_stevedore_v1_Inventory, _stevedore_v1_Inventory__Output>
      JobSpec: MessageTypeDefinition<_stevedore_v1_JobSpec, _stevedore_v1_JobSpec__Output>
      LocalAttempt: MessageTypeDefinition<_stevedore_v1_LocalAttempt, _stevedore_v1_LocalAttempt__Output>
      LogLine: MessageTypeDefinition<_stevedore_v1_LogLine, _stevedore_v1_LogLine__Output>
      Mount: MessageTypeDefinition<_stevedore_v1_Mount, _stevedore_v1_Mount__Output>
      OutputSpec: MessageTypeDefinition<_stevedore_v1_OutputSpec, _stevedore_v1_OutputSpec__Output>
      Resources: MessageTypeDefinition<_stevedore_v1_Resources, _stevedore_v1_Resources__Output>
      RestartPolicy: MessageTypeDefinition<_stevedore_v1_RestartPolicy, _stevedore_v1_RestartPolicy__Output>
      Ulimit: MessageTypeDefinition<_stevedore_v1_Ulimit, _stevedore_v1_Ulimit__Output>
    }
  }
}

