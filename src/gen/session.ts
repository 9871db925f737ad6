import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { AgentMessage as _stevedore_v1_AgentMessage, AgentMessage__Output as _stevedore_v1_AgentMessage__Output } from './stevedore/v1/AgentMessage.ts';
import type { AgentSessionClient as _stevedore_v1_AgentSessionClient, AgentSessionDefinition as _stevedore_v1_AgentSessionDefinition } from './stevedore/v1/AgentSession.ts';
import type { AttemptExited as _stevedore_v1_AttemptExited, AttemptExited__Output as _stevedore_v1_AttemptExited__Output } from './stevedore/v1/AttemptExited.ts';
import type { AttemptProgress as _stevedore_v1_AttemptProgress, AttemptProgress__Output as _stevedore_v1_AttemptProgress__Output } from './stevedore/v1/AttemptProgress.ts';
import type { AttemptStateChanged as _stevedore_v1_AttemptStateChanged, AttemptStateChanged__Output as _stevedore_v1_AttemptStateChanged__Output } from './stevedore/v1/AttemptStateChanged.ts';
import type { AttemptStatus as _stevedore_v1_AttemptStatus, AttemptStatus__Output as _stevedore_v1_AttemptStatus__Output } from './stevedore/v1/AttemptStatus.ts';
import type { CheckpointCommitted as _stevedore_v1_CheckpointCommitted, CheckpointCommitted__Output as _stevedore_v1_CheckpointCommitted__Output } from './stevedore/v1/CheckpointCommitted.ts';
import type { CheckpointRestored as _stevedore_v1_CheckpointRestored, CheckpointRestored__Output as _stevedore_v1_CheckpointRestored__Output } from './stevedore/v1/CheckpointRestored.ts';
import type { CheckpointSpec as _stevedore_v1_CheckpointSpec, CheckpointSpec__Output as _stevedore_v1_CheckpointSpec__Output } from './stevedore/v1/CheckpointSpec.ts';
import type { Command as _stevedore_v1_Command, Command__Output as _stevedore_v1_Command__Output } from './stevedore/v1/Command.ts';
import type { CommandAck as _stevedore_v1_CommandAck, CommandAck__Output as _stevedore_v1_CommandAck__Output } from './stevedore/v1/CommandAck.ts';
import type { CoordinatorMessage as _stevedore_v1_CoordinatorMessage, CoordinatorMessage__Output as _stevedore_v1_CoordinatorMessage__Output } from './stevedore/v1/CoordinatorMessage.ts';
import type { Drain as _stevedore_v1_Drain, Drain__Output as _stevedore_v1_Drain__Output } from './stevedore/v1/Drain.ts';
import type { DrainReport as _stevedore_v1_DrainReport, DrainReport__Output as _stevedore_v1_DrainReport__Output } from './stevedore/v1/DrainReport.ts';
import type { Error as _stevedore_v1_Error, Error__Output as _stevedore_v1_Error__Output } from './stevedore/v1/Error.ts';
import type { Event as _stevedore_v1_Event, Event__Output as _stevedore_v1_Event__Output } from './stevedore/v1/Event.ts';
import type { EventAck as _stevedore_v1_EventAck, EventAck__Output as _stevedore_v1_EventAck__Output } from './stevedore/v1/EventAck.ts';
import type { Gpu as _stevedore_v1_Gpu, Gpu__Output as _stevedore_v1_Gpu__Output } from './stevedore/v1/Gpu.ts';
import type { GpuHealth as _stevedore_v1_GpuHealth, GpuHealth__Output as _stevedore_v1_GpuHealth__Output } from './stevedore/v1/GpuHealth.ts';
import type { Heartbeat as _stevedore_v1_Heartbeat, Heartbeat__Output as _stevedore_v1_Heartbeat__Output } from './stevedore/v1/Heartbeat.ts';
import type { HeartbeatAck as _stevedore_v1_HeartbeatAck, HeartbeatAck__Output as _stevedore_v1_HeartbeatAck__Output } from './stevedore/v1/HeartbeatAck.ts';
import type { HostMount as _stevedore_v1_HostMount, HostMount__Output as _stevedore_v1_HostMount__Output } from './stevedore/v1/HostMount.ts';
import type { InputSpec as _stevedore_v1_InputSpec, InputSpec__Output as _stevedore_v1_InputSpec__Output } from './stevedore/v1/InputSpec.ts';
import type { Inventory as _stevedore_v1_Inventory, Inventory__Output as _stevedore_v1_Inventory__Output } from './stevedore/v1/Inventory.ts';
import type { JobSpec as _stevedore_v1_JobSpec, JobSpec__Output as _stevedore_v1_JobSpec__Output } from './stevedore/v1/JobSpec.ts';
import type { LogChunk as _stevedore_v1_LogChunk, LogChunk__Output as _stevedore_v1_LogChunk__Output } from './stevedore/v1/LogChunk.ts';
import type { LogLine as _stevedore_v1_LogLine, LogLine__Output as _stevedore_v1_LogLine__Output } from './stevedore/v1/LogLine.ts';
import type { Mount as _stevedore_v1_Mount, Mount__Output as _stevedore_v1_Mount__Output } from './stevedore/v1/Mount.ts';
import type { OutputSpec as _stevedore_v1_OutputSpec, OutputSpec__Output as _stevedore_v1_OutputSpec__Output } from './stevedore/v1/OutputSpec.ts';
import type { PreemptionNotice as _stevedore_v1_PreemptionNotice, PreemptionNotice__Output as _stevedore_v1_PreemptionNotice__Output } from './stevedore/v1/PreemptionNotice.ts';
import type { Register as _stevedore_v1_Register, Register__Output as _stevedore_v1_Register__Output } from './stevedore/v1/Register.ts';
import type { Registered as _stevedore_v1_Registered, Registered__Output as _stevedore_v1_Registered__Output } from './stevedore/v1/Registered.ts';
import type { Resources as _stevedore_v1_Resources, Resources__Output as _stevedore_v1_Resources__Output } from './stevedore/v1/Resources.ts';
import type { RestartPolicy as _stevedore_v1_RestartPolicy, RestartPolicy__Output as _stevedore_v1_RestartPolicy__Output } from './stevedore/v1/RestartPolicy.ts';
import type { SessionError as _stevedore_v1_SessionError, SessionError__Output as _stevedore_v1_SessionError__Output } from './stevedore/v1/SessionError.ts';
import type { StartJob as _stevedore_v1_StartJob, StartJob__Output as _stevedore_v1_StartJob__Output } from './stevedore/v1/StartJob.ts';
import type { StopJob as _stevedore_v1_StopJob, StopJob__Output as _stevedore_v1_StopJob__Output } from './stevedore/v1/StopJob.ts';
import type { Ulimit as _stevedore_v1_Ulimit, Ulimit__Output as _stevedore_v1_Ulimit__Output } from './stevedore/v1/Ulimit.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  stevedore: {
    v1: {
      AgentMessage: MessageTypeDefinition<_stevedore_v1_AgentMessage, _stevedore_v1_AgentMessage__Output>
      AgentSession: SubtypeConstructor<typeof grpc.Client, _stevedore_v1_AgentSessionClient> & { service: _stevedore_v1_AgentSessionDefinition }
      AttemptExited: MessageTypeDefinition<_stevedore_v1_AttemptExited, _stevedore_v1_AttemptExited__Output>
      AttemptProgress: MessageTypeDefinition<_stevedore_v1_AttemptProgress, _stevedore_v1_AttemptProgress__Output>
      AttemptState: EnumTypeDefinition
      AttemptStateChanged: MessageTypeDefinition<_stevedore_v1_AttemptStateChanged, _stevedore_v1_AttemptStateChanged__Output>
      AttemptStatus: MessageTypeDefinition<_stevedore_v1_AttemptStatus, _stevedore_v1_AttemptStatus__Output>
      CheckpointCommitted: MessageTypeDefinition<_stevedore_v1_CheckpointCommitted, _stevedore_v1_CheckpointCommitted__Output>
      CheckpointRestored: MessageTypeDefinition<_stevedore_v1_CheckpointRestored, _stevedore_v1_CheckpointRestored__Output>
      CheckpointSpec: MessageTypeDefinition<_stevedore_v1_CheckpointSpec, _stevedore_v1_CheckpointSpec__Output>
      Command: MessageTypeDefinition<_stevedore_v1_Command, _stevedore_v1_Command__Output>
      CommandAck: MessageTypeDefinition<_stevedore_v1_CommandAck, _stevedore_v1_CommandAck__Output>
      CoordinatorMessage: MessageTypeDefinition<_stevedore_v1_CoordinatorMessage, _stevedore_v1_CoordinatorMessage__Output>
      Drain: MessageTypeDefinition<_stevedore_v1_Drain, _stevedore_v1_Drain__Output>
      DrainReport: MessageTypeDefinition<_stevedore_v1_DrainReport, _stevedore_v1_DrainReport__Output>
      Error: MessageTypeDefinition<_stevedore_v1_Error, _stevedore_v1_Error__Output>
      Event: MessageTypeDefinition<_stevedore_v1_Event, _stevedore_v1_Event__Output>
      EventAck: MessageTypeDefinition<_stevedore_v1_EventAck, _stevedore_v1_EventAck__Output>
      Gpu: MessageTypeDefinition<_stevedore_v1_Gpu, _stevedore_v1_Gpu__Output>
      GpuHealth: MessageTypeDefinition<_stevedore_v1_GpuHealth, _stevedore_v1_GpuHealth__Output>
      Heartbeat: MessageTypeDefinition<_stevedore_v1_Heartbeat, _stevedore_v1_Heartbeat__Output>
      HeartbeatAck: MessageTypeDefinition<_stevedore_v1_HeartbeatAck, _stevedore_v1_HeartbeatAck__Output>
      HostMount: MessageTypeDefinition<_stevedore_v1_HostMount, _stevedore_v1_HostMount__Output>
      InputSpec: MessageTypeDefinition<_stevedore_v1_InputSpec, _stevedore_v1_InputSpec__Output>
      Inventory: MessageTypeDefinition<_stevedore_v1_Inventory, _stevedore_v1_Inventory__Output>
      JobSpec: MessageTypeDefinition<_stevedore_v1_JobSpec, _stevedore_v1_JobSpec__Output>
      LogChunk: MessageTypeDefinition<_stevedore_v1_LogChunk, _stevedore_v1_LogChunk__Output>
      LogLine: MessageTypeDefinition<_stevedore_v1_LogLine, _stevedore_v1_LogLine__Output>
      Mount: MessageTypeDefinition<_stevedore_v1_Mount, _stevedore_v1_Mount__Output>
      OutputSpec: MessageTypeDefinition<_stevedore_v1_OutputSpec, _stevedore_v1_OutputSpec__Output>
      PreemptionNotice: MessageTypeDefinition<_stevedore_v1_PreemptionNotice, _stevedore_v1_PreemptionNotice__Output>
      Register: MessageTypeDefinition<_stevedore_v1_Register, _stevedore_v1_Register__Output>
      Registered: MessageTypeDefinition<_stevedore_v1_Registered, _stevedore_v1_Registered__Output>
      Resources: MessageTypeDefinition<_stevedore_v1_Resources, _stevedore_v1_Resources__Output>
      RestartPolicy: MessageTypeDefinition<_stevedore_v1_RestartPolicy, _stevedore_v1_RestartPolicy__Output>
      SessionError: MessageTypeDefinition<_stevedore_v1_SessionError, _stevedore_v1_SessionError__Output>
      StartJob: MessageTypeDefinition<_stevedore_v1_StartJob, _stevedore_v1_StartJob__Output>
      StopJob: MessageTypeDefinition<_stevedore_v1_StopJob, _stevedore_v1_StopJob__Output>
      Ulimit: MessageTypeDefinition<_stevedore_v1_Ulimit, _stevedore_v1_Ulimit__Output>
    }
  }
}

