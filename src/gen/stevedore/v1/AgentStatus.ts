// Original file: proto/stevedore/v1/agent_local.proto

import type { Inventory as _stevedore_v1_Inventory, Inventory__Output as _stevedore_v1_Inventory__Output } from '../../stevedore/v1/Inventory.ts';
import type { LocalAttempt as _stevedore_v1_LocalAttempt, LocalAttempt__Output as _stevedore_v1_LocalAttempt__Output } from '../../stevedore/v1/LocalAttempt.ts';
import type { Long } from '@grpc/proto-loader';

export interface AgentStatus {
  'nodeId'?: (string);
  'agentVersion'?: (string);
  'coordinator'?: (string);
  'sessionState'?: (string);
  'sessionId'?: (string);
  'connectedSinceMs'?: (number | string | Long);
  'unackedEvents'?: (number | string | Long);
  'draining'?: (boolean);
  'inventory'?: (_stevedore_v1_Inventory | null);
  'labels'?: ({[key: string]: string});
  'attempts'?: (_stevedore_v1_LocalAttempt)[];
  'lastError'?: (string);
}

export interface AgentStatus__Output {
  'nodeId': (string);
  'agentVersion': (string);
  'coordinator': (string);
  'sessionState': (string);
  'sessionId': (string);
  'connectedSinceMs': (number);
  'unackedEvents': (number);
  'draining': (boolean);
  'inventory': (_stevedore_v1_Inventory__Output | null);
  'labels': ({[key: string]: string});
  'attempts': (_stevedore_v1_LocalAttempt__Output)[];
  'lastError': (string);
}
