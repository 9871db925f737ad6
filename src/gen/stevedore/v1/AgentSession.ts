// Original file: proto/stevedore/v1/session.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AgentMessage as _stevedore_v1_AgentMessage, AgentMessage__Output as _stevedore_v1_AgentMessage__Output } from '../../stevedore/v1/AgentMessage.ts';
import type { CoordinatorMessage as _stevedore_v1_CoordinatorMessage, CoordinatorMessage__Output as _stevedore_v1_CoordinatorMessage__Output } from '../../stevedore/v1/CoordinatorMessage.ts';

export interface AgentSessionClient extends grpc.Client {
  Connect(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_stevedore_v1_AgentMessage, _stevedore_v1_CoordinatorMessage__Output>;
  Connect(options?: grpc.CallOptions): grpc.ClientDuplexStream<_stevedore_v1_AgentMessage, _stevedore_v1_CoordinatorMessage__Output>;
  connect(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_stevedore_v1_AgentMessage, _stevedore_v1_CoordinatorMessage__Output>;
  connect(options?: grpc.CallOptions): grpc.ClientDuplexStream<_stevedore_v1_AgentMessage, _stevedore_v1_CoordinatorMessage__Output>;
  
}

export interface AgentSessionHandlers extends grpc.UntypedServiceImplementation {
  Connect: grpc.handleBidiStreamingCall<_stevedore_v1_AgentMessage__Output, _stevedore_v1_CoordinatorMessage>;
  
}

export interface AgentSessionDefinition extends grpc.ServiceDefinition {
  Connect: MethodDefinition<_stevedore_v1_AgentMessage, _stevedore_v1_CoordinatorMessage, _stevedore_v1_AgentMessage__Output, _stevedore_v1_CoordinatorMessage__Output>
}
