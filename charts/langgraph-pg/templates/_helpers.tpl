{{/*
The chart name, or nameOverride.
*/}}
{{- define "langgraph-pg.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every resource: fullnameOverride, else "<release>-<name>" (just the release name
when it already contains the chart name). Truncated to 52 characters so that suffixes such as
"-migrate" and the prune CronJob's Job names stay within Kubernetes' limits.
*/}}
{{- define "langgraph-pg.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "langgraph-pg.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "langgraph-pg.labels" -}}
helm.sh/chart: {{ include "langgraph-pg.chart" . }}
{{ include "langgraph-pg.selectorLabels" . }}
app.kubernetes.io/version: {{ include "langgraph-pg.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "langgraph-pg.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels shared by every component; add app.kubernetes.io/component to tell them apart.
*/}}
{{- define "langgraph-pg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "langgraph-pg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of the server pods (Deployment, Service, PDB, NetworkPolicy, spread constraints).
*/}}
{{- define "langgraph-pg.serverSelectorLabels" -}}
{{ include "langgraph-pg.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/*
The image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "langgraph-pg.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
The image reference, pinned by digest when image.digest is set.
*/}}
{{- define "langgraph-pg.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository (include "langgraph-pg.imageTag" .) .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "langgraph-pg.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
ServiceAccount names.
*/}}
{{- define "langgraph-pg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "langgraph-pg.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "langgraph-pg.migrationServiceAccountName" -}}
{{- if .Values.migration.serviceAccount.create }}
{{- default (printf "%s-migrate" (include "langgraph-pg.fullname" .)) .Values.migration.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.migration.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Secrets. The chart's own Secret (<fullname>) holds "database-url" unless database.existingSecret is
set, and "api-keys" when API keys are enabled without apiKeys.existingSecret. The migration's
"migrate-database-url" lives in its own Secret (<fullname>-migrate) so the server pods never see
the migration role's credentials.
*/}}
{{- define "langgraph-pg.createsSecret" -}}
{{- if or (not .Values.database.existingSecret) (and .Values.apiKeys.enabled (not .Values.apiKeys.existingSecret)) }}true{{ end }}
{{- end }}

{{- define "langgraph-pg.databaseSecretName" -}}
{{- default (include "langgraph-pg.fullname" .) .Values.database.existingSecret }}
{{- end }}

{{- define "langgraph-pg.migrateSecretName" -}}
{{- default (printf "%s-migrate" (include "langgraph-pg.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "langgraph-pg.apiKeysSecretName" -}}
{{- default (include "langgraph-pg.fullname" .) .Values.apiKeys.existingSecret }}
{{- end }}

{{/*
Whether the migration Job runs as a Helm hook.
*/}}
{{- define "langgraph-pg.migrationIsHook" -}}
{{- if and .Values.migration.enabled .Values.migration.useHelmHooks }}true{{ end }}
{{- end }}

{{/*
Hook annotations of the migration Job ("prereq" false) and of the resources it uses (its Secret
and ServiceAccount, "prereq" true); $weight orders the prerequisites before the Job.
The failed Job is kept (its status holds the exit code) but holds no secret. Its prerequisites
must never outlive the hook phase: hook-succeeded deletes them after a success, and after a
failure modern Helm deletes the hooks that ran before the failed one by that same policy. Older
Helm (3.17 and before) leaves them, so they are also post-delete hooks: on `helm uninstall`
before-hook-creation deletes the leftover of a failed install, and hook-succeeded the re-created
copy. hook-failed covers a prerequisite that itself fails to be created.
Usage: include "langgraph-pg.migrationHookAnnotations" (dict "root" $ "weight" "-10" "prereq" true)
*/}}
{{- define "langgraph-pg.migrationHookAnnotations" -}}
{{- if include "langgraph-pg.migrationIsHook" .root }}
{{- if .prereq }}
helm.sh/hook: pre-install,pre-upgrade,post-delete
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded,hook-failed
{{- else }}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}
{{- end }}
{{- end }}

{{/*
The migration Job's name. As a hook it is stable (before-hook-creation replaces it). As a plain Job
it changes with each revision and with the image and migration settings, so every `helm upgrade`
and every Argo CD/Flux render of a changed release creates a new Job instead of patching an
immutable one.
*/}}
{{- define "langgraph-pg.migrationJobName" -}}
{{- $base := printf "%s-migrate" (include "langgraph-pg.fullname" .) }}
{{- if include "langgraph-pg.migrationIsHook" . }}
{{- $base }}
{{- else }}
{{- $hash := dict "image" (include "langgraph-pg.image" .) "migration" .Values.migration "extraEnv" .Values.extraEnv "secret" (include "langgraph-pg.migrateSecretName" .) | toJson | sha256sum | trunc 8 }}
{{- printf "%s-%d-%s" ($base | trunc 44 | trimSuffix "-") (int .Release.Revision) $hash }}
{{- end }}
{{- end }}

{{/*
The pod's terminationGracePeriodSeconds: set, or preStop sleep + drain timeout + 15 s. A set value
must leave time for the preStop sleep and the whole drain.
*/}}
{{- define "langgraph-pg.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- $needed := add $s.preStopSleepSeconds $s.drainTimeoutSeconds }}
{{- if kindIs "invalid" $s.terminationGracePeriodSeconds }}
{{- add $needed 15 }}
{{- else }}
{{- if le (int $s.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must be greater than shutdown.preStopSleepSeconds + shutdown.drainTimeoutSeconds (%d)" (int $s.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- int $s.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Checks of value combinations the schema cannot express; rendered (as nothing) by every template
that depends on them, so `helm template` fails with one clear line.
*/}}
{{- define "langgraph-pg.validate" -}}
{{- include "langgraph-pg.checkConnectionBudget" . }}
{{- if not .Values.database.existingSecret }}
{{- if not .Values.database.url }}
{{- fail "database.url is empty: set it, or set database.existingSecret to a Secret with the keys database-url and migrate-database-url" }}
{{- end }}
{{- if and .Values.migration.enabled .Values.database.pgbouncer (not .Values.database.migrateUrl) }}
{{- fail "database.pgbouncer is true but database.migrateUrl is empty: the migration needs a direct PostgreSQL URL (session advisory locks do not survive PgBouncer transaction pooling)" }}
{{- end }}
{{- end }}
{{- if and .Values.apiKeys.enabled (not .Values.apiKeys.existingSecret) (not .Values.apiKeys.keys) }}
{{- fail "apiKeys.enabled is true but apiKeys.keys is empty and apiKeys.existingSecret is not set" }}
{{- end }}
{{- if and (gt (int .Values.config.metricsPort) 0) (or (lt (int .Values.config.metricsPort) 1024) (eq (int .Values.config.metricsPort) (int .Values.config.port))) }}
{{- fail "config.metricsPort must be 0 (metrics on the http port) or a port from 1024 other than config.port" }}
{{- end }}
{{- if .Values.auth.jwt.enabled }}
{{- if and (not .Values.auth.jwt.existingSecret) (not .Values.auth.jwt.key) }}
{{- fail "auth.jwt.enabled is true but auth.jwt.key is empty and auth.jwt.existingSecret is not set" }}
{{- end }}
{{- if not .Values.apiKeys.enabled }}
{{- fail "auth.jwt.enabled needs apiKeys.enabled: the helm test Pod (and other services) call with an API key" }}
{{- end }}
{{- if (.Values.langgraphJson.content.auth | default dict).path }}
{{- fail "auth.jwt.enabled and langgraphJson.content.auth.path are both set: choose your own Auth handlers or the built-in JWT" }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{/*
Volumes of every pod: /tmp plus extraVolumes.
*/}}
{{- define "langgraph-pg.volumes" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.medium }}
    medium: {{ . }}
    {{- end }}
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Volume mounts of every container: /tmp plus extraVolumeMounts.
*/}}
{{- define "langgraph-pg.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
DATABASE_URL from the database Secret (the pods' URL, which may go through PgBouncer).
*/}}
{{- define "langgraph-pg.databaseUrlEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "langgraph-pg.databaseSecretName" . }}
      key: database-url
{{- end }}

{{/*
Pod-level fields shared by every pod: pull secrets, security context, token mount.
Usage: include "langgraph-pg.podCommon" (dict "root" $ "serviceAccountName" "...")
*/}}
{{- define "langgraph-pg.podCommon" -}}
serviceAccountName: {{ .serviceAccountName }}
automountServiceAccountToken: {{ .root.Values.serviceAccount.automountServiceAccountToken }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/*
Scheduling of a job pod: its own nodeSelector/tolerations, else the top-level ones; its own affinity.
Usage: include "langgraph-pg.jobScheduling" (dict "root" $ "component" .Values.migration)
*/}}
{{- define "langgraph-pg.jobScheduling" -}}
{{- with (default .root.Values.nodeSelector .component.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default .root.Values.tolerations .component.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
langgraph.json: whether one is configured, the ConfigMap that holds it, and where pods see it.
*/}}
{{- define "langgraph-pg.langgraphJsonEnabled" -}}
{{- if or .Values.langgraphJson.existingConfigMap .Values.langgraphJson.content }}true{{- end }}
{{- end }}

{{- define "langgraph-pg.langgraphJsonConfigMapName" -}}
{{- default (printf "%s-langgraph-json" (include "langgraph-pg.fullname" .)) .Values.langgraphJson.existingConfigMap }}
{{- end }}

{{- define "langgraph-pg.langgraphJsonPath" -}}
{{- printf "%s/langgraph.json" .Values.langgraphJson.mountPath }}
{{- end }}

{{/*
The volume and mount of langgraph.json (server pods; the migration pods only for an existing
ConfigMap, which exists before the pre-install hook runs).
*/}}
{{- define "langgraph-pg.langgraphJsonVolume" -}}
- name: langgraph-json
  configMap:
    name: {{ include "langgraph-pg.langgraphJsonConfigMapName" . }}
{{- end }}

{{- define "langgraph-pg.langgraphJsonVolumeMount" -}}
- name: langgraph-json
  mountPath: {{ .Values.langgraphJson.mountPath }}
  readOnly: true
{{- end }}

{{/*
What the migration pods know of langgraph.json: the file itself from an existing ConfigMap, or
else the store section of the chart's content as LANGGRAPH_STORE (the only section the schema
depends on: store.index needs the vector steps), so the hook needs no ConfigMap of its own.
*/}}
{{- define "langgraph-pg.migrationLanggraphEnv" -}}
{{- if .Values.langgraphJson.existingConfigMap }}
- name: LANGGRAPH_CONFIG
  value: {{ include "langgraph-pg.langgraphJsonPath" . | quote }}
{{- else if and .Values.langgraphJson.content .Values.langgraphJson.content.store }}
- name: LANGGRAPH_STORE
  value: {{ .Values.langgraphJson.content.store | toJson | quote }}
{{- end }}
{{- end }}

{{/*
The built-in JWT's Secret (the chart's own, or auth.jwt.existingSecret) and the file the pods read.
*/}}
{{- define "langgraph-pg.authSecretName" -}}
{{- default (printf "%s-auth" (include "langgraph-pg.fullname" .)) .Values.auth.jwt.existingSecret }}
{{- end }}

{{- define "langgraph-pg.authKeyFile" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.auth.jwt.mountPath) (ternary "jwks.json" "public-key.pem" (eq .Values.auth.jwt.keyFormat "jwks")) }}
{{- end }}
