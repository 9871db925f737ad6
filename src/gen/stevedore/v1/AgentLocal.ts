// Original file: proto/stevedore/v1/agent_local.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AgentStatus as _stevedore_v1_AgentStatus, AgentStatus__Output as _stevedore_v1_AgentStatus__Output } from '../../stevedore/v1/AgentStatus.ts';
import type { GetStatusRequest as _stevedore_v1_GetStatusRequest, GetStatusRequest__Output as _stevedore_v1_GetStatusRequest__Output } from '../../stevedore/v1/GetStatusRequest.ts';

export interface AgentLocalClient extends grpc.Client {
  GetStatus(argument: _stevedore_v1_GetStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_AgentStatus__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _stevedore_v1_GetStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_AgentStatus__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _stevedore_v1_GetStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_AgentStatus__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _stevedore_v1_GetStatusRequest, callback: grpc.requestCallback<_stevedore_v1_AgentStatus__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _stevedore_v1_GetStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_AgentStatus__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _stevedore_v1_GetStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_stevedore_v1_AgentStatus__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _stevedore_v1_GetStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_stevedore_v1_AgentStatus__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _stevedore_v1_GetStatusRequest, callback: grpc.requestCallback<_stevedore_v1_AgentStatus__Output>): grpc.ClientUnaryCall;
  
}

export interface AgentLocalHandlers extends grpc.UntypedServiceImplementation {
  GetStatus: grpc.handleUnaryCall<_stevedore_v1_GetStatusRequest__Output, _stevedore_v1_AgentStatus>;
  
}

export interface AgentLocalDefinition extends grpc.ServiceDefinition {
  GetStatus: MethodDefinition<_stevedore_v1_GetStatusRequest, _stevedore_v1_AgentStatus, _stevedore_v1_GetStatusRequest__Output, _stevedore_v1_AgentStatus__Output>
}
