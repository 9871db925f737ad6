import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Attempt as _stevedore_v1_Attempt, Attempt__Output as _stevedore_v1_Attempt__Output } from './stevedore/v1/Attempt.ts';
import type { AttemptProgress as _stevedore_v1_AttemptProgress, AttemptProgress__Output as _stevedore_v1_AttemptProgress__Output } from './stevedore/v1/AttemptProgress.ts';
import type { CancelJobRequest as _stevedore_v1_CancelJobRequest, CancelJobRequest__Output as _stevedore_v1_CancelJobRequest__Output } from './stevedore/v1/CancelJobRequest.ts';
import type { Checkpoint as _stevedore_v1_Checkpoint, Checkpoint__Output as _stevedore_v1_Checkpoint__Output } from './stevedore/v1/Checkpoint.ts';
import type { CheckpointSpec as _stevedore_v1_CheckpointSpec, CheckpointSpec__Output as _stevedore_v1_CheckpointSpec__Output } from './stevedore/v1/CheckpointSpec.ts';
import type { ControlClient as _stevedore_v1_ControlClient, ControlDefinition as _stevedore_v1_ControlDefinition } from './stevedore/v1/Control.ts';
import type { DrainNodeRequest as _stevedore_v1_DrainNodeRequest, DrainNodeRequest__Output as _stevedore_v1_DrainNodeRequest__Output } from './stevedore/v1/DrainNodeRequest.ts';
import type { Error as _stevedore_v1_Error, Error__Output as _stevedore_v1_Error__Output } from './stevedore/v1/Error.ts';
import type { GetJobRequest as _stevedore_v1_GetJobRequest, GetJobRequest__Output as _stevedore_v1_GetJobRequest__Output } from './stevedore/v1/GetJobRequest.ts';
import type { Gpu as _stevedore_v1_Gpu, Gpu__Output as _stevedore_v1_Gpu__Output } from './stevedore/v1/Gpu.ts';
import type { GpuHealth as _stevedore_v1_GpuHealth, GpuHealth__Output as _stevedore_v1_GpuHealth__Output } from './stevedore/v1/GpuHealth.ts';
import type { HostMount as _stevedore_v1_HostMount, HostMount__Output as _stevedore_v1_HostMount__Output } from './stevedore/v1/HostMount.ts';
import type { InputSpec as _stevedore_v1_InputSpec, InputSpec__Output as _stevedore_v1_InputSpec__Output } from './stevedore/v1/InputSpec.ts';
import type { Inventory as _stevedore_v1_Inventory, Inventory__Output as _stevedore_v1_Inventory__Output } from './stevedore/v1/Inventory.ts';
import type { Job as _stevedore_v1_Job, Job__Output as _stevedore_v1_Job__Output } from './stevedore/v1/Job.ts';
import type { JobLogLine as _stevedore_v1_JobLogLine, JobLogLine__Output as _stevedore_v1_JobLogLine__Output } from './stevedore/v1/JobLogLine.ts';
import type { JobSpec as _stevedore_v1_JobSpec, JobSpec__Output as _stevedore_v1_JobSpec__Output } from './stevedore/v1/JobSpec.ts';
import type { ListCheckpointsRequest as _stevedore_v1_ListCheckpointsRequest, ListCheckpointsRequest__Output as _stevedore_v1_ListCheckpointsRequest__Output } from './stevedore/v1/ListCheckpointsRequest.ts';
import type { ListCheckpointsResponse as _stevedore_v1_ListCheckpointsResponse, ListCheckpointsResponse__Output as _stevedore_v1_ListCheckpointsResponse__Output } from './stevedore/v1/ListCheckpointsResponse.ts';
import type { ListJobsRequest as _stevedore_v1_ListJobsRequest, ListJobsRequest__Output as _stevedore_v1_ListJobsRequest__Output } from './stevedore/v1/ListJobsRequest.ts';
import type { ListJobsResponse as _stevedore_v1_ListJobsResponse, ListJobsResponse__Output as _stevedore_v1_ListJobsResponse__Output } from './stevedore/v1/ListJobsResponse.ts';
import type { ListNodesRequest as _stevedore_v1_ListNodesRequest, ListNodesRequest__Output as _stevedore_v1_ListNodesRequest__Output } from './stevedore/v1/ListNodesRequest.ts';
import type { ListNodesResponse as _stevedore_v1_ListNodesResponse, ListNodesResponse__Output as _stevedore_v1_ListNodesResponse__Output } from './stevedore/v1/ListNodesResponse.ts';
import type { LogLine as _stevedore_v1_LogLine, LogLine__Output as _stevedore_v1_LogLine__Output } from './stevedore/v1/LogLine.ts';
import type { Mount as _stevedore_v1_Mount, Mount__Output as _stevedore_v1_Mount__Output } from './stevedore/v1/Mount.ts';
import type { Node as _stevedore_v1_Node, Node__Output as _stevedore_v1_Node__Output } from './stevedore/v1/Node.ts';
import type { OutputSpec as _stevedore_v1_OutputSpec, OutputSpec__Output as _stevedore_v1_OutputSpec__Output } from './stevedore/v1/OutputSpec.ts';
import type { Resources as _stevedore_v1_Resources, Resources__Output as _stevedore_v1_Resources__Output } from './stevedore/v1/Resources.ts';
import type { RestartPolicy as _stevedore_v1_RestartPolicy, RestartPolicy__Output as _stevedore_v1_RestartPolicy__Output } from './stevedore/v1/RestartPolicy.ts';
import type { StreamLogsRequest as _stevedore_v1_StreamLogsRequest, StreamLogsRequest__Output as _stevedore_v1_StreamLogsRequest__Output } from './stevedore/v1/StreamLogsRequest.ts';
import type { SubmitJobRequest as _stevedore_v1_SubmitJobRequest, SubmitJobRequest__Output as _stevedore_v1_SubmitJobRequest__Output } from './stevedore/v1/SubmitJobRequest.ts';
import type { Ulimit as _stevedore_v1_Ulimit, Ulimit__Output as _stevedore_v1_Ulimit__Output } from './stevedore/v1/Ulimit.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  stevedore: {
    v1: {
      Attempt: MessageTypeDefinition<_stevedore_v1_Attempt, _stevedore_v1_Attempt__Output>
      AttemptProgress: MessageTypeDefinition<_stevedore_v1_AttemptProgress, _stevedore_v1_AttemptProgress__Output>
      AttemptState: EnumTypeDefinition
      CancelJobRequest: MessageTypeDefinition<_stevedore_v1_CancelJobRequest, _stevedore_v1_CancelJobRequest__Output>
      Checkpoint: MessageTypeDefinition<_stevedore_v1_Checkpoint, _stevedore_v1_Checkpoint__Output>
      CheckpointSpec: MessageTypeDefinition<_stevedore_v1_CheckpointSpec, _stevedore_v1_CheckpointSpec__Output>
      Control: SubtypeConstructor<typeof grpc.Client, _stevedore_v1_ControlClient> & { service: _stevedore_v1_ControlDefinition }
      DrainNodeRequest: MessageTypeDefinition<_stevedore_v1_DrainNodeRequest, _stevedore_v1_DrainNodeRequest__Output>
      Error: MessageTypeDefinition<_stevedore_v1_Error, _stevedore_v1_Error__Output>
      GetJobRequest: MessageTypeDefinition<_stevedore_v1_GetJobRequest, _stevedore_v1_GetJobRequest__Output>
      Gpu: MessageTypeDefinition<_stevedore_v1_Gpu, _stevedore_v1_Gpu__Output>
      GpuHealth: MessageTypeDefinition<_stevedore_v1_GpuHealth, _stevedore_v1_GpuHealth__Output>
      HostMount: MessageTypeDefinition<_stevedore_v1_HostMount, _stevedore_v1_HostMount__Output>
      InputSpec: MessageTypeDefinition<_stevedore_v1_InputSpec, _stevedore_v1_InputSpec__Output>
      Inventory: MessageTypeDefinition<_stevedore_v1_Inventory, _stevedore_v1_Inventory__Output>
      Job: MessageTypeDefinition<_stevedore_v1_Job, _stevedore_v1_Job__Output>
      JobLogLine: MessageTypeDefinition<_stevedore_v1_JobLogLine, _stevedore_v1_JobLogLine__Output>
      JobSpec: MessageTypeDefinition<_stevedore_v1_JobSpec, _stevedore_v1_JobSpec__Output>
      ListCheckpointsRequest: MessageTypeDefinition<_stevedore_v1_ListCheckpointsRequest, _stevedore_v1_ListCheckpointsRequest__Output>
      ListCheckpointsResponse: MessageTypeDefinition<_stevedore_v1_ListCheckpointsResponse, _stevedore_v1_ListCheckpointsResponse__Output>
      ListJobsRequest: MessageTypeDefinition<_stevedore_v1_ListJobsRequest, _stevedore_v1_ListJobsRequest__Output>
      ListJobsResponse: MessageTypeDefinition<_stevedore_v1_ListJobsResponse, _stevedore_v1_ListJobsResponse__Output>
      ListNodesRequest: MessageTypeDefinition<_stevedore_v1_ListNodesRequest, _stevedore_v1_ListNodesRequest__Output>
      ListNodesResponse: MessageTypeDefinition<_stevedore_v1_ListNodesResponse, _stevedore_v1_ListNodesResponse__Output>
      LogLine: MessageTypeDefinition<_stevedore_v1_LogLine, _stevedore_v1_LogLine__Output>
      Mount: MessageTypeDefinition<_stevedore_v1_Mount, _stevedore_v1_Mount__Output>
      Node: MessageTypeDefinition<_stevedore_v1_Node, _stevedore_v1_Node__Output>
      OutputSpec: MessageTypeDefinition<_stevedore_v1_OutputSpec, _stevedore_v1_OutputSpec__Output>
      Resources: MessageTypeDefinition<_stevedore_v1_Resources, _stevedore_v1_Resources__Output>
      RestartPolicy: MessageTypeDefinition<_stevedore_v1_RestartPolicy, _stevedore_v1_RestartPolicy__Output>
      StreamLogsRequest: MessageTypeDefinition<_stevedore_v1_StreamLogsRequest, _stevedore_v1_StreamLogsRequest__Output>
      SubmitJobRequest: MessageTypeDefinition<_stevedore_v1_SubmitJobRequest, _stevedore_v1_SubmitJobRequest__Output>
      Ulimit: MessageTypeDefinition<_stevedore_v1_Ulimit, _stevedore_v1_Ulimit__Output>
    }
  }
}

