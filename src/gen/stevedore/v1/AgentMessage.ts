// Original file: proto/stevedore/v1/session.proto

import type { Register as _stevedore_v1_Register, Register__Output as _stevedore_v1_Register__Output } from '../../stevedore/v1/Register.ts';
import type { Heartbeat as _stevedore_v1_Heartbeat, Heartbeat__Output as _stevedore_v1_Heartbeat__Output } from '../../stevedore/v1/Heartbeat.ts';
import type { Event as _stevedore_v1_Event, Event__Output as _stevedore_v1_Event__Output } from '../../stevedore/v1/Event.ts';
import type { CommandAck as _stevedore_v1_CommandAck, CommandAck__Output as _stevedore_v1_CommandAck__Output } from '../../stevedore/v1/CommandAck.ts';

export interface AgentMessage {
  'register'?: (_stevedore_v1_Register | null);
  'heartbeat'?: (_stevedore_v1_Heartbeat | null);
  'event'?: (_stevedore_v1_Event | null);
  'commandAck'?: (_stevedore_v1_CommandAck | null);
  'msg'?: "register"|"heartbeat"|"event"|"commandAck";
}

export interface AgentMessage__Output {
  'register'?: (_stevedore_v1_Register__Output | null);
  'heartbeat'?: (_stevedore_v1_Heartbeat__Output | null);
  'event'?: (_stevedore_v1_Event__Output | null);
  'commandAck'?: (_stevedore_v1_CommandAck__Output | null);
  'msg'?: "register"|"heartbeat"|"event"|"commandAck";
}
