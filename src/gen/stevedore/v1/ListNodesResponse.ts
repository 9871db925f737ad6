// Original file: proto/stevedore/v1/control.proto

import type { Node as _stevedore_v1_Node, Node__Output as _stevedore_v1_Node__Output } from '../../stevedore/v1/Node.ts';

export interface ListNodesResponse {
  'nodes'?: (_stevedore_v1_Node)[];
}

export interface ListNodesResponse__Output {
  'nodes': (_stevedore_v1_Node__Output)[];
}
