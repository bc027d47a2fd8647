{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "kubemint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" (or just the release name when it already contains the chart name). */}}
{{- define "kubemint.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubemint.operator.fullname" -}}
{{- printf "%s-operator" (include "kubemint.fullname" .) }}
{{- end }}

{{- define "kubemint.tokenServer.fullname" -}}
{{- printf "%s-token-server" (include "kubemint.fullname" .) }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "kubemint.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubemint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubemint
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include with (dict "root" $ "component" "operator"). */}}
{{- define "kubemint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubemint.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kubemint.componentLabels" -}}
{{ include "kubemint.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kubemint.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "kubemint.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubemint.tokenServer.serviceAccountName" -}}
{{- if .Values.tokenServer.serviceAccount.create }}
{{- default (include "kubemint.tokenServer.fullname" .) .Values.tokenServer.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.tokenServer.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubemint.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The issuer URL: .Values.issuer, else the token server's in-cluster Service URL. */}}
{{- define "kubemint.issuer" -}}
{{- if .Values.issuer }}
{{- .Values.issuer | trimSuffix "/" }}
{{- else }}
{{- $port := int .Values.tokenServer.service.port }}
{{- $host := printf "%s.%s.svc" (include "kubemint.tokenServer.fullname" .) .Release.Namespace }}
{{- if eq $port 80 }}
{{- printf "http://%s" $host }}
{{- else }}
{{- printf "http://%s:%d" $host $port }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubemint.tokenUrl" -}}
{{- .Values.tokenUrl | default (printf "%s/oauth2/token" (include "kubemint.issuer" .)) }}
{{- end }}

{{/* Pod-level settings shared by both Deployments: include with (dict "root" $ "values" ...). */}}
{{- define "kubemint.podCommon" -}}
{{- with .root.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.values.priorityClassName | default .root.Values.global.priorityClassName) }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  # The root filesystem is read-only; Python and its libraries get a small writable /tmp.
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- with .values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
The paths the Ingress and the HTTPRoute publish: the OAuth endpoints and JWKS (/oauth2/…), the
RFC 8414 / OIDC discovery documents, and forward-auth (/authz/…). Never /metrics, /healthz or
/readyz: those are for the in-cluster scraper and the kubelet's probes, and /metrics is not
for outsiders. `type` is the Ingress pathType; Prefix matches whole path segments.
*/}}
{{- define "kubemint.tokenServer.publicPaths" -}}
- {path: /oauth2, type: Prefix}
- {path: /.well-known/oauth-authorization-server, type: Exact}
- {path: /.well-known/openid-configuration, type: Exact}
- {path: /authz, type: Prefix}
{{- end }}

{{/* KUBEMINT_DEFAULT_SIGNING_KEY: the SigningKey signingKey.* describes, as JSON (name, spec,
owner); config.DefaultSigningKey reads it. */}}
{{- define "kubemint.defaultSigningKey" -}}
{{- with .Values.signingKey }}
{{- $spec := dict "algorithm" .algorithm "use" (eq .algorithm "RSA-OAEP-256" | ternary "enc" "sig") "rotation" (dict "every" .rotation.every "prePublish" .rotation.prePublish "retainAfter" .rotation.retainAfter) }}
{{- if .keySize }}
{{- $_ := set $spec "keySize" (int .keySize) }}
{{- end }}
{{- $owner := .keep | ternary "" (include "kubemint.operator.fullname" $) }}
{{- dict "name" .name "spec" $spec "owner" $owner | toJson }}
{{- end }}
{{- end }}
