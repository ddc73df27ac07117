package cache

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"ctseg/weights"
)

// Variant is one published checkpoint of the bundle.
type Variant struct {
	Name         string  // "1.5mm" or "3mm": the cache folder and what --variant takes
	Spacing      float64 // voxel spacing in mm the network was trained at
	URL          string  // where Fetch downloads it
	MD5          string  // lowercase hex md5 of the published file, checked before parsing
	DownloadName string  // the published file name; also names the partial download
	// Config, when set, is the network every file stored under this variant must be (the
	// app's label map and preprocessing assume it). Nil accepts any valid SegResNet, which is
	// what test manifests serving the small golden model need.
	Config *weights.Config
}

// Manifest lists the variants Fetch can download and Import can recognise by md5.
type Manifest struct {
	Variants []Variant
}

const officialBase = "https://developer.download.nvidia.com/assets/Clara/monai/tutorials/model_zoo/"

// Official is the manifest of the MONAI wholeBody_ct_segmentation bundle (its
// large_files.yml). It is the only manifest the command line uses: nothing in the
// environment or on the command line can point ctseg at another URL or checksum, so a
// cached entry marked official really is the published file. Tests build their own.
func Official() Manifest {
	bundle := weights.BundleConfig()
	return Manifest{Variants: []Variant{
		{
			Name: "1.5mm", Spacing: 1.5,
			DownloadName: "model_wholebody_ct_segmentation.pt",
			URL:          officialBase + "model_wholebody_ct_segmentation.pt",
			MD5:          "aded45dea52f9c00b37922bcd0a98502",
			Config:       &bundle,
		},
		{
			Name: "3mm", Spacing: 3.0,
			DownloadName: "model_lowres_wholebody_ct_segmentation.pt",
			URL:          officialBase + "model_lowres_wholebody_ct_segmentation.pt",
			MD5:          "dbdebeae650f4fb5ea7f4ad01e0d2431",
			Config:       &bundle,
		},
	}}
}

// Names lists the variant names in manifest order, e.g. "1.5mm|3mm" when joined.
func (m Manifest) Names() []string {
	out := make([]string, len(m.Variants))
	for i, v := range m.Variants {
		out[i] = v.Name
	}
	return out
}

// Lookup finds a variant by name. It also accepts the spacing written other ways ("3",
// "3.0", "3.0mm", "1.5 mm"), since people type what the bundle README says.
func (m Manifest) Lookup(name string) (Variant, error) {
	s := strings.ToLower(strings.TrimSpace(name))
	for _, v := range m.Variants {
		if s == strings.ToLower(v.Name) {
			return v, nil
		}
	}
	if f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "mm")), 64); err == nil {
		for _, v := range m.Variants {
			if v.Spacing == f {
				return v, nil
			}
		}
	}
	return Variant{}, fmt.Errorf("unknown weights variant %q (want %s)", name, strings.Join(m.Names(), " or "))
}

// ByMD5 finds the variant whose published file has this md5.
func (m Manifest) ByMD5(sum string) (Variant, bool) {
	for _, v := range m.Variants {
		if strings.EqualFold(v.MD5, sum) {
			return v, true
		}
	}
	return Variant{}, false
}

// Validate checks what the cache relies on: names that are safe folder and file names,
// http(s) URLs, well-formed md5 sums, no duplicates.
func (m Manifest) Validate() error {
	if len(m.Variants) == 0 {
		return fmt.Errorf("manifest lists no variants")
	}
	seen := map[string]bool{}
	for _, v := range m.Variants {
		switch {
		case !safeName(v.Name):
			return fmt.Errorf("manifest: variant name %q is not a plain folder name", v.Name)
		case !safeName(v.DownloadName):
			return fmt.Errorf("manifest: variant %s: download name %q is not a plain file name", v.Name, v.DownloadName)
		case !(v.Spacing > 0):
			return fmt.Errorf("manifest: variant %s: spacing %g is not positive", v.Name, v.Spacing)
		case seen[strings.ToLower(v.Name)]:
			return fmt.Errorf("manifest: variant %s listed twice", v.Name)
		}
		if b, err := hex.DecodeString(v.MD5); err != nil || len(b) != 16 {
			return fmt.Errorf("manifest: variant %s: md5 %q is not 32 hex digits", v.Name, v.MD5)
		}
		if u, err := url.Parse(v.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("manifest: variant %s: %q is not an http(s) URL", v.Name, v.URL)
		}
		seen[strings.ToLower(v.Name)] = true
	}
	return nil
}

// safeName accepts a single path element that cannot escape the cache folder or hide in it.
func safeName(s string) bool {
	return s != "" && s == filepath.Base(s) && !strings.HasPrefix(s, ".") &&
		!strings.ContainsAny(s, `/\:`) && len(s) <= 200
}
