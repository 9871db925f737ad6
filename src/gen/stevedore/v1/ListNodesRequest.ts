// Original file: proto/stevedore/v1/control.proto


export interface ListNodesRequest {
}

export interface ListNodesRequest__Output {
}
