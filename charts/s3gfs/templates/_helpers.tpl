{{/* The chart name. */}}
{{- define "s3gfs.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name for namespaced objects; at most 40 characters,
so that "<fullname>-controller-metrics" is still a valid Service name. */}}
{{- define "s3gfs.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "s3gfs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "s3gfs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: s3gfs
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "controller"). */}}
{{- define "s3gfs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "s3gfs.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference: (dict "ctx" $ "img" .Values.images.controller "app" true). */}}
{{- define "s3gfs.image" -}}
{{- $tag := .img.tag -}}
{{- if and (get . "app") (not $tag) -}}{{- $tag = .ctx.Chart.AppVersion -}}{{- end -}}
{{- if not $tag -}}{{- fail (printf "image %s has no tag" .img.repository) -}}{{- end -}}
{{- $ref := printf "%s:%s" .img.repository $tag -}}
{{- if .img.digest -}}{{- $ref = printf "%s@%s" $ref .img.digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* The name of the S3 Secret, or "" when there is none. */}}
{{- define "s3gfs.secretName" -}}
{{- if .Values.s3.secret.create -}}
{{- default (printf "%s-s3" (include "s3gfs.fullname" .)) .Values.s3.secret.name -}}
{{- else -}}
{{- .Values.s3.secret.name -}}
{{- end -}}
{{- end -}}

{{/* Environment of a container that uses S3 through the AWS SDK chain. */}}
{{- define "s3gfs.awsEnv" -}}
{{- $secret := include "s3gfs.secretName" . -}}
{{- if $secret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: accessKeyID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: secretAccessKey}
- name: AWS_ENDPOINT_URL_S3
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: endpoint, optional: true}
- name: AWS_REGION
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: region, optional: true}
{{- end }}
{{- if .Values.s3.caBundleConfigMap }}
- name: AWS_CA_BUNDLE
  value: /etc/s3gfs/ca/ca.crt
{{- end }}
{{- end -}}

{{/* The CA bundle's volume and mount (nothing without s3.caBundleConfigMap). */}}
{{- define "s3gfs.caVolume" -}}
{{- if .Values.s3.caBundleConfigMap }}
- name: s3-ca
  configMap:
    name: {{ .Values.s3.caBundleConfigMap }}
    items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- end -}}
{{- define "s3gfs.caMount" -}}
{{- if .Values.s3.caBundleConfigMap }}
- name: s3-ca
  mountPath: /etc/s3gfs/ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* The security context of a container that needs nothing. */}}
{{- define "s3gfs.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The pod security context of a non-root pod. */}}
{{- define "s3gfs.nonRootPod" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment of the node's mounter: the chart-wide endpoint and region
(the controller's --s3-endpoint/--s3-region do not reach the volume id, so
the mounts must fall back to the same), and the CA bundle. No credentials:
those come with each volume's node-stage Secret. */}}
{{- define "s3gfs.mounterEnv" -}}
{{- with .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .Values.s3.caBundleConfigMap }}
- name: AWS_CA_BUNDLE
  value: /etc/s3gfs/ca/ca.crt
{{- end }}
{{- end -}}

{{/* "true" when the chart runs a reaper: reaper.enabled, and the volumes
found in the cluster (reaper.volumesFrom) or listed (reaper.volumes). */}}
{{- define "s3gfs.reaperOn" -}}
{{- if and .Values.reaper.enabled (or (eq .Values.reaper.volumesFrom "kubernetes") .Values.reaper.volumes) -}}
true
{{- end -}}
{{- end -}}
