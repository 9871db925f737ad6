// Loads the protobuf definitions at run time with the same options that
// scripts/gen-proto.ts uses to generate the types in src/gen/.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import type { ProtoGrpcType as SessionProto } from '../gen/session.ts';
import type { ProtoGrpcType as ControlProto } from '../gen/control.ts';
import type { ProtoGrpcType as AgentLocalProto } from '../gen/agent_local.ts';

const protoDir = path.resolve(import.meta.dirname, '..', '..', 'proto');

export const PROTOCOL_VERSION = 1;

const definition = protoLoader.loadSync(
  ['stevedore/v1/session.proto', 'stevedore/v1/control.proto', 'stevedore/v1/agent_local.proto'],
  { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [protoDir] },
);

type V1 = SessionProto['stevedore']['v1'] & ControlProto['stevedore']['v1'] & AgentLocalProto['stevedore']['v1'];

export const v1 = (grpc.loadPackageDefinition(definition) as unknown as { stevedore: { v1: V1 } }).stevedore.v1;

export type { AgentMessage, AgentMessage__Output } from '../gen/stevedore/v1/AgentMessage.ts';
export type { CoordinatorMessage, CoordinatorMessage__Output } from '../gen/stevedore/v1/CoordinatorMessage.ts';
export type { JobSpec as JobSpecMessage, JobSpec__Output as JobSpecMessage__Output } from '../gen/stevedore/v1/JobSpec.ts';
export type { Event as EventMessage, Event__Output as EventMessage__Output } from '../gen/stevedore/v1/Event.ts';
export type { AttemptState } from '../gen/stevedore/v1/AttemptState.ts';
export type { Inventory, Inventory__Output } from '../gen/stevedore/v1/Inventory.ts';
export type { Gpu, Gpu__Output } from '../gen/stevedore/v1/Gpu.ts';
export type { Job, Job__Output } from '../gen/stevedore/v1/Job.ts';
export type { Node, Node__Output } from '../gen/stevedore/v1/Node.ts';
export type { AgentStatus, AgentStatus__Output } from '../gen/stevedore/v1/AgentStatus.ts';
