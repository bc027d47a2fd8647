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

{{/* The Service port: tokenServer.service.port, else 443 with TLS and 80 without. */}}
{{- define "kubemint.tokenServer.servicePort" -}}
{{- if .Values.tokenServer.service.port }}
{{- int .Values.tokenServer.service.port }}
{{- else if .Values.tokenServer.tls.enabled }}443
{{- else }}80
{{- end }}
{{- end }}

{{/* The main port's name (Service and container): https with TLS, http without; meshes and
controllers read the protocol from it. */}}
{{- define "kubemint.tokenServer.portName" -}}
{{- if .Values.tokenServer.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The in-cluster base URL of the token server's Service, e.g. for forward-auth. `domain`:
"" or ".cluster.local". Include with (dict "root" $ "domain" ...). */}}
{{- define "kubemint.tokenServer.serviceUrl" -}}
{{- $root := .root }}
{{- $port := int (include "kubemint.tokenServer.servicePort" $root) }}
{{- $scheme := include "kubemint.tokenServer.portName" $root }}
{{- $host := printf "%s.%s.svc%s" (include "kubemint.tokenServer.fullname" $root) $root.Release.Namespace .domain }}
{{- if or (and (eq $scheme "http") (eq $port 80)) (and (eq $scheme "https") (eq $port 443)) }}
{{- printf "%s://%s" $scheme $host }}
{{- else }}
{{- printf "%s://%s:%d" $scheme $host $port }}
{{- end }}
{{- end }}

{{/* The issuer URL: .Values.issuer, else the token server's in-cluster Service URL (https
whenever tokenServer.tls is enabled). */}}
{{- define "kubemint.issuer" -}}
{{- if .Values.issuer }}
{{- .Values.issuer | trimSuffix "/" }}
{{- else }}
{{- include "kubemint.tokenServer.serviceUrl" (dict "root" . "domain" "") }}
{{- end }}
{{- end }}

{{/* The Secret holding the token server's certificate (tls.crt, tls.key). */}}
{{- define "kubemint.tokenServer.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "kubemint.tokenServer.fullname" .)) .Values.tokenServer.tls.secretName }}
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
{{- with .volumes }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The paths the Ingress and the HTTPRoute publish: tokenServer.publishedPaths (by default the
token and revocation endpoints, JWKS and the discovery documents). /metrics is not on the
main port at all; /healthz, /readyz, introspection and forward-auth are published only if
listed. `type` is the Ingress pathType; Prefix matches whole path segments.
*/}}
{{- define "kubemint.tokenServer.publicPaths" -}}
{{- toYaml .Values.tokenServer.publishedPaths }}
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
