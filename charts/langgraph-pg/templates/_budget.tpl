{{/*
The release's worst case of database connections, as JSON: every server pod at once during a
rollout (autoscaling.maxReplicas when the HPA is on, else replicaCount, plus rollingUpdate.maxSurge
rounded up as Kubernetes does) times database.pool.maxSize times config.workers, plus the migration Job's one session
and the prune Job's two. A pod's schema-wait init container uses one connection before its pool
opens, never beside it, so it adds nothing.
*/}}
{{- define "langgraph-pg.connectionBudget" -}}
{{- $pods := int .Values.replicaCount }}
{{- if .Values.autoscaling.enabled }}
{{- $pods = int .Values.autoscaling.maxReplicas }}
{{- end }}
{{- $surgeValue := toString .Values.rollingUpdate.maxSurge }}
{{- $surge := 0 }}
{{- if hasSuffix "%" $surgeValue }}
{{- $surge = div (add (mul $pods (int (trimSuffix "%" $surgeValue))) 99) 100 }}
{{- else }}
{{- $surge = int $surgeValue }}
{{- end }}
{{- $workers := int .Values.config.workers }}
{{- $perPod := mul (int .Values.database.pool.maxSize) $workers }}
{{- $server := mul (add $pods $surge) $perPod }}
{{- $migration := ternary 1 0 (and .Values.migration.enabled true) }}
{{- $prune := ternary 2 0 (and .Values.prune.enabled true) }}
{{- $total := add $server $migration $prune }}
{{- $limit := .Values.database.maxConnections }}
{{- $over := and (not (kindIs "invalid" $limit)) (gt (int $total) (int $limit)) }}
{{- dict "pods" $pods "surge" $surge "pool" (int .Values.database.pool.maxSize) "workers" $workers "perPod" $perPod "server" $server "migration" $migration "prune" $prune "total" $total "limit" $limit "over" $over | toJson }}
{{- end }}

{{/*
One line describing the worst case and the limit it exceeds (used by NOTES.txt and by the check).
*/}}
{{- define "langgraph-pg.connectionBudgetMessage" -}}
{{- $b := include "langgraph-pg.connectionBudget" . | fromJson -}}
database connections in the worst case: {{ int $b.total }} = ({{ int $b.pods }} pods + {{ int $b.surge }} rollout surge) x {{ int $b.perPod }} (database.pool.maxSize{{ if gt (int $b.workers) 1 }} x config.workers{{ end }}) + {{ int $b.migration }} migration + {{ int $b.prune }} prune, above database.maxConnections ({{ int $b.limit }}); lower database.pool.maxSize or autoscaling.maxReplicas, raise the server's max_connections, or put PgBouncer in front (docs/install.md)
{{- end }}

{{/*
With database.maxConnectionsPolicy "fail", a worst case above database.maxConnections stops the render.
*/}}
{{- define "langgraph-pg.checkConnectionBudget" -}}
{{- $b := include "langgraph-pg.connectionBudget" . | fromJson }}
{{- if and $b.over (eq .Values.database.maxConnectionsPolicy "fail") }}
{{- fail (include "langgraph-pg.connectionBudgetMessage" .) }}
{{- end }}
{{- end }}
