package driver

// creds are the S3 settings a request's CSI secrets carry.
type creds struct {
	AccessKeyID     string
	SecretAccessKey string
	Endpoint        string
	Region          string
}

// parseSecrets reads the keys of docs/csi.md and ignores any other key (a
// Secret may be shared with other consumers). Messages name the key,
// never its value.
func parseSecrets(s map[string]string) (creds, error) {
	c := creds{AccessKeyID: s[SecretAccessKeyID], SecretAccessKey: s[SecretSecretAccessKey], Endpoint: s[SecretEndpoint], Region: s[SecretRegion]}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return creds{}, invalid("secrets", "set both %s and %s, or neither (to use the plugin's own AWS credentials)", SecretAccessKeyID, SecretSecretAccessKey)
	}
	if validateEndpoint("", c.Endpoint) != nil {
		return creds{}, invalid("secret "+SecretEndpoint, "not an endpoint URL such as https://s3.example.com or http://10.0.0.5:9000")
	}
	if validateRegion("", c.Region) != nil {
		return creds{}, invalid("secret "+SecretRegion, "not a region name")
	}
	return c, nil
}
