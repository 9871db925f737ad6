// Original file: proto/stevedore/v1/session.proto

import type { Inventory as _stevedore_v1_Inventory, Inventory__Output as _stevedore_v1_Inventory__Output } from '../../stevedore/v1/Inventory.ts';
import type { AttemptStatus as _stevedore_v1_AttemptStatus, AttemptStatus__Output as _stevedore_v1_AttemptStatus__Output } from '../../stevedore/v1/AttemptStatus.ts';
import type { Long } from '@grpc/proto-loader';

export interface Register {
  'nodeId'?: (string);
  'agentVersion'?: (string);
  'protocolVersion'?: (number);
  'inventory'?: (_stevedore_v1_Inventory | null);
  'labels'?: ({[key: string]: string});
  'attempts'?: (_stevedore_v1_AttemptStatus)[];
  'lastEventId'?: (number | string | Long);
}

export interface Register__Output {
  'nodeId': (string);
  'agentVersion': (string);
  'protocolVersion': (number);
  'inventory': (_stevedore_v1_Inventory__Output | null);
  'labels': ({[key: string]: string});
  'attempts': (_stevedore_v1_AttemptStatus__Output)[];
  'lastEventId': (number);
}
