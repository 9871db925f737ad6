// Original file: proto/stevedore/v1/control.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CancelJobRequest as _stevedore_v1_CancelJobRequest, CancelJobRequest__Output as _stevedore_v1_CancelJobRequest__Output } from '../../stevedore/v1/CancelJobRequest.ts';
import type { DrainNodeRequest as _stevedore_v1_DrainNodeRequest, DrainNodeRequest__Output as _stevedore_v1_DrainNodeRequest__Output } from '../../stevedore/v1/DrainNodeRequest.ts';
import type { GetJobRequest as _stevedore_v1_GetJobRequest, GetJobRequest__Output as _stevedore_v1_GetJobRequest__Output } from '../../stevedore/v1/GetJobRequest.ts';
import type { Job as _stevedore_v1_Job, Job__Output as _stevedore_v1_Job__Output } from '../../stevedore/v1/Job.ts';
import type { JobLogLine as _stevedore_v1_JobLogLine, JobLogLine__Output as _stevedore_v1_JobLogLine__Output } from '../../stevedore/v1/JobLogLine.ts';
import type { ListCheckpointsRequest as _stevedore_v1_ListCheckpointsRequest, ListCheckpointsRequest__Output as _stevedore_v1_ListCheckpointsRequest__Output } from '../../stevedore/v1/ListCheckpointsRequest.ts';
import type { ListCheckpointsResponse as _stevedore_v1_ListCheckpointsResponse, ListCheckpointsResponse__Output as _stevedore_v1_ListCheckpointsResponse__Output } from '../../stevedore/v1/ListCheckpointsResponse.ts';
import type { ListJobsRequest as _stevedore_v1_ListJobsRequest, ListJobsRequest__Output as _stevedore_v1_ListJobsRequest__Output } from '../../stevedore/v1/ListJobsRequest.ts';
import type { ListJobsResponse as _stevedore_v1_ListJobsResponse, ListJobsResponse__Output as _stevedore_v1_ListJobsResponse__Output } from '../../stevedore/v1/ListJobsResponse.ts';
import type { ListNodesRequest as _stevedore_v1_ListNodesRequest, ListNodesRequest__Output as _stevedore_v1_ListNodesRequest__Output } from '../../stevedore/v1/ListNodesRequest.ts';
import type { ListNodesResponse as _stevedore_v1_ListNodesResponse, ListNodesResponse__Output as _stevedore_v1_ListNodesResponse__Output } from '../../stevedore/v1/ListNodesResponse.ts';
import type { Node as _stevedore_v1_Node, Node__Output as _stevedore_v1_Node__Output } from '../../stevedore/v1/Node.ts';
import type { StreamLogsRequest as _stevedore_v1_StreamLogsRequest, StreamLogsRequest__Output as _stevedore_v1_StreamLogsRequest__Output } from '../../stevedore/v1/StreamLogsRequest.ts';
import type { SubmitJobRequest as _stevedore_v1_SubmitJobRequest, SubmitJobRequest__Output as _stevedore_v1_SubmitJobRequest__Output } from '../../stevedore/v1/SubmitJobRequest.ts';

export interface ControlClient extends grpc.Client {
  CancelJob(argument: _stevedore_v1_CancelJobRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  CancelJob(argument: _stevedore_v1_CancelJobRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  CancelJob(argument: _stevedore_v1_CancelJobRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  CancelJob(argument: _stevedore_v1_CancelJobRequest, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  cancelJob(argument: _stevedore_v1_CancelJobRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  cancelJob(argument: _stevedore_v1_CancelJobRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  cancelJob(argument: _stevedore_v1_CancelJobRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  cancelJob(argument: _stevedore_v1_CancelJobRequest, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  
  DrainNode(argument: _stevedore_v1_DrainNodeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Node__Output>): grpc.ClientUnaryCall;
  DrainNode(argument: _stevedore_v1_DrainNodeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_Node__Output>): grpc.ClientUnaryCall;
  DrainNode(argument: _stevedore_v1_DrainNodeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Node__Output>): grpc.ClientUnaryCall;
  DrainNode(argument: _stevedore_v1_DrainNodeRequest, callback: grpc.requestCallback<_stevedore_v1_Node__Output>): grpc.ClientUnaryCall;
  drainNode(argument: _stevedore_v1_DrainNodeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Node__Output>): grpc.ClientUnaryCall;
  drainNode(argument: _stevedore_v1_DrainNodeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_Node__Output>): grpc.ClientUnaryCall;
  drainNode(argument: _stevedore_v1_DrainNodeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Node__Output>): grpc.ClientUnaryCall;
  drainNode(argument: _stevedore_v1_DrainNodeRequest, callback: grpc.requestCallback<_stevedore_v1_Node__Output>): grpc.ClientUnaryCall;
  
  GetJob(argument: _stevedore_v1_GetJobRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  GetJob(argument: _stevedore_v1_GetJobRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  GetJob(argument: _stevedore_v1_GetJobRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  GetJob(argument: _stevedore_v1_GetJobRequest, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  getJob(argument: _stevedore_v1_GetJobRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  getJob(argument: _stevedore_v1_GetJobRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  getJob(argument: _stevedore_v1_GetJobRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  getJob(argument: _stevedore_v1_GetJobRequest, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  
  ListCheckpoints(argument: _stevedore_v1_ListCheckpointsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListCheckpointsResponse__Output>): grpc.ClientUnaryCall;
  ListCheckpoints(argument: _stevedore_v1_ListCheckpointsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_ListCheckpointsResponse__Output>): grpc.ClientUnaryCall;
  ListCheckpoints(argument: _stevedore_v1_ListCheckpointsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListCheckpointsResponse__Output>): grpc.ClientUnaryCall;
  ListCheckpoints(argument: _stevedore_v1_ListCheckpointsRequest, callback: grpc.requestCallback<_stevedore_v1_ListCheckpointsResponse__Output>): grpc.ClientUnaryCall;
  listCheckpoints(argument: _stevedore_v1_ListCheckpointsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListCheckpointsResponse__Output>): grpc.ClientUnaryCall;
  listCheckpoints(argument: _stevedore_v1_ListCheckpointsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_ListCheckpointsResponse__Output>): grpc.ClientUnaryCall;
  listCheckpoints(argument: _stevedore_v1_ListCheckpointsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListCheckpointsResponse__Output>): grpc.ClientUnaryCall;
  listCheckpoints(argument: _stevedore_v1_ListCheckpointsRequest, callback: grpc.requestCallback<_stevedore_v1_ListCheckpointsResponse__Output>): grpc.ClientUnaryCall;
  
  ListJobs(argument: _stevedore_v1_ListJobsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListJobsResponse__Output>): grpc.ClientUnaryCall;
  ListJobs(argument: _stevedore_v1_ListJobsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_ListJobsResponse__Output>): grpc.ClientUnaryCall;
  ListJobs(argument: _stevedore_v1_ListJobsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListJobsResponse__Output>): grpc.ClientUnaryCall;
  ListJobs(argument: _stevedore_v1_ListJobsRequest, callback: grpc.requestCallback<_stevedore_v1_ListJobsResponse__Output>): grpc.ClientUnaryCall;
  listJobs(argument: _stevedore_v1_ListJobsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListJobsResponse__Output>): grpc.ClientUnaryCall;
  listJobs(argument: _stevedore_v1_ListJobsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_ListJobsResponse__Output>): grpc.ClientUnaryCall;
  listJobs(argument: _stevedore_v1_ListJobsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListJobsResponse__Output>): grpc.ClientUnaryCall;
  listJobs(argument: _stevedore_v1_ListJobsRequest, callback: grpc.requestCallback<_stevedore_v1_ListJobsResponse__Output>): grpc.ClientUnaryCall;
  
  ListNodes(argument: _stevedore_v1_ListNodesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListNodesResponse__Output>): grpc.ClientUnaryCall;
  ListNodes(argument: _stevedore_v1_ListNodesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_ListNodesResponse__Output>): grpc.ClientUnaryCall;
  ListNodes(argument: _stevedore_v1_ListNodesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListNodesResponse__Output>): grpc.ClientUnaryCall;
  ListNodes(argument: _stevedore_v1_ListNodesRequest, callback: grpc.requestCallback<_stevedore_v1_ListNodesResponse__Output>): grpc.ClientUnaryCall;
  listNodes(argument: _stevedore_v1_ListNodesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListNodesResponse__Output>): grpc.ClientUnaryCall;
  listNodes(argument: _stevedore_v1_ListNodesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_ListNodesResponse__Output>): grpc.ClientUnaryCall;
  listNodes(argument: _stevedore_v1_ListNodesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_ListNodesResponse__Output>): grpc.ClientUnaryCall;
  listNodes(argument: _stevedore_v1_ListNodesRequest, callback: grpc.requestCallback<_stevedore_v1_ListNodesResponse__Output>): grpc.ClientUnaryCall;
  
  StreamLogs(argument: _stevedore_v1_StreamLogsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_stevedore_v1_JobLogLine__Output>;
  StreamLogs(argument: _stevedore_v1_StreamLogsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_stevedore_v1_JobLogLine__Output>;
  streamLogs(argument: _stevedore_v1_StreamLogsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_stevedore_v1_JobLogLine__Output>;
  streamLogs(argument: _stevedore_v1_StreamLogsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_stevedore_v1_JobLogLine__Output>;
  
  SubmitJob(argument: _stevedore_v1_SubmitJobRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  SubmitJob(argument: _stevedore_v1_SubmitJobRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  SubmitJob(argument: _stevedore_v1_SubmitJobRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  SubmitJob(argument: _stevedore_v1_SubmitJobRequest, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  submitJob(argument: _stevedore_v1_SubmitJobRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  submitJob(argument: _stevedore_v1_SubmitJobRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  submitJob(argument: _stevedore_v1_SubmitJobRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  submitJob(argument: _stevedore_v1_SubmitJobRequest, callback: grpc.requestCallback<_stevedore_v1_Job__Output>): grpc.ClientUnaryCall;
  
}

export interface ControlHandlers extends grpc.UntypedServiceImplementation {
  CancelJob: grpc.handleUnaryCall<_stevedore_v1_CancelJobRequest__Output, _stevedore_v1_Job>;
  
  DrainNode: grpc.handleUnaryCall<_stevedore_v1_DrainNodeRequest__Output, _stevedore_v1_Node>;
  
  GetJob: grpc.handleUnaryCall<_stevedore_v1_GetJobRequest__Output, _stevedore_v1_Job>;
  
  ListCheckpoints: grpc.handleUnaryCall<_stevedore_v1_ListCheckpointsRequest__Output, _stevedore_v1_ListCheckpointsResponse>;
  
  ListJobs: grpc.handleUnaryCall<_stevedore_v1_ListJobsRequest__Output, _stevedore_v1_ListJobsResponse>;
  
  ListNodes: grpc.handleUnaryCall<_stevedore_v1_ListNodesRequest__Output, _stevedore_v1_ListNodesResponse>;
  
  StreamLogs: grpc.handleServerStreamingCall<_stevedore_v1_StreamLogsRequest__Output, _stevedore_v1_JobLogLine>;
  
  SubmitJob: grpc.handleUnaryCall<_stevedore_v1_SubmitJobRequest__Output, _stevedore_v1_Job>;
  
}

export interface ControlDefinition extends grpc.ServiceDefinition {
  CancelJob: MethodDefinition<_stevedore_v1_CancelJobRequest, _stevedore_v1_Job, _stevedore_v1_CancelJobRequest__Output, _stevedore_v1_Job__Output>
  DrainNode: MethodDefinition<_stevedore_v1_DrainNodeRequest, _stevedore_v1_Node, _stevedore_v1_DrainNodeRequest__Output, _stevedore_v1_Node__Output>
  GetJob: MethodDefinition<_stevedore_v1_GetJobRequest, _stevedore_v1_Job, _stevedore_v1_GetJobRequest__Output, _stevedore_v1_Job__Output>
  ListCheckpoints: MethodDefinition<_stevedore_v1_ListCheckpointsRequest, _stevedore_v1_ListCheckpointsResponse, _stevedore_v1_ListCheckpointsRequest__Output, _stevedore_v1_ListCheckpointsResponse__Output>
  ListJobs: MethodDefinition<_stevedore_v1_ListJobsRequest, _stevedore_v1_ListJobsResponse, _stevedore_v1_ListJobsRequest__Output, _stevedore_v1_ListJobsResponse__Output>
  ListNodes: MethodDefinition<_stevedore_v1_ListNodesRequest, _stevedore_v1_ListNodesResponse, _stevedore_v1_ListNodesRequest__Output, _stevedore_v1_ListNodesResponse__Output>
  StreamLogs: MethodDefinition<_stevedore_v1_StreamLogsRequest, _stevedore_v1_JobLogLine, _stevedore_v1_StreamLogsRequest__Output, _stevedore_v1_JobLogLine__Output>
  SubmitJob: MethodDefinition<_stevedore_v1_SubmitJobRequest, _stevedore_v1_Job, _stevedore_v1_SubmitJobRequest__Output, _stevedore_v1_Job__Output>
}
