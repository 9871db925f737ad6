// Original file: proto/stevedore/v1/control.proto

import type { Inventory as _stevedore_v1_Inventory, Inventory__Output as _stevedore_v1_Inventory__Output } from '../../stevedore/v1/Inventory.ts';
import type { Long } from '@grpc/proto-loader';

export interface Node {
  'nodeId'?: (string);
  'hostname'?: (string);
  'state'?: (string);
  'labels'?: ({[key: string]: string});
  'inventory'?: (_stevedore_v1_Inventory | null);
  'lastSeenMs'?: (number | string | Long);
  'agentVersion'?: (string);
  'allocatedGpuUuids'?: (string)[];
}

export interface Node__Output {
  'nodeId': (string);
  'hostname': (string);
  'state': (string);
  'labels': ({[key: string]: string});
  'inventory': (_stevedore_v1_Inventory__Output | null);
  'lastSeenMs': (number);
  'agentVersion': (string);
  'allocatedGpuUuids': (string)[];
}
