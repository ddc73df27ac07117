package volume

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// ecodeCaret is NIFTI_ECODE_CARET (30), the registered extension code of the Caret /
// Connectome Workbench XML extension.
//
// Why this format for the embedded label names: no single convention is read by every viewer.
// ITK-SNAP, 3D Slicer and FSLeyes ignore NIfTI extensions and take label names from sidecar
// files (WriteColorTable writes those). Among embedded tables, the Caret "CaretExtension /
// LabelTable" XML is the one with the widest reach for CT segmentations: TotalSegmentator
// writes exactly this XML into its multilabel outputs (and its load_multilabel_nifti, Nora and
// tools built on TotalSegmentator read it back from the first extension, whatever its code),
// and Connectome Workbench reads it under ecode 30. Writing it first, with ecode 30, serves
// both. The alternatives (AFNI's ecode 4 VALUE_LABEL_DTABLE, CIFTI-2's ecode 32) are read
// only by their own toolkits.
const ecodeCaret = 30

// defaultPalette is the 12-colour cycle TotalSegmentator uses for the same table, by label id.
var defaultPalette = [][3]uint8{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 0}, {255, 0, 255},
	{0, 255, 255}, {255, 128, 0}, {255, 0, 128}, {128, 255, 128}, {0, 128, 255}, {128, 128, 128},
	{185, 170, 155}}

func labelColor(i int, colors [][3]uint8) [3]uint8 {
	if i < len(colors) {
		return colors[i]
	}
	return defaultPalette[i%len(defaultPalette)]
}

// labelTableXML builds the CaretExtension document for labels 1..len(names)-1.
func labelTableXML(names []string, colors [][3]uint8) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<CaretExtension Version="1.0">` + "\n")
	b.WriteString(`  <VolumeInformation Index="0">` + "\n")
	b.WriteString("    <LabelTable>\n")
	for i := 1; i < len(names); i++ {
		c := labelColor(i, colors)
		fmt.Fprintf(&b, `      <Label Key="%d" Red="%.6g" Green="%.6g" Blue="%.6g" Alpha="1">`, i,
			float64(c[0])/255, float64(c[1])/255, float64(c[2])/255)
		writeCDATA(&b, names[i])
		b.WriteString("</Label>\n")
	}
	b.WriteString("    </LabelTable>\n")
	b.WriteString("    <VolumeType><![CDATA[Label]]></VolumeType>\n")
	b.WriteString("  </VolumeInformation>\n")
	b.WriteString("</CaretExtension>\n")
	// Pad with spaces to the 16-byte extension boundary so no NUL bytes follow the XML (the
	// padding is part of the extension data, and XML parsers reject NULs).
	for (8+b.Len())%16 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes()
}

// writeCDATA writes s as CDATA, splitting any "]]>" it contains.
func writeCDATA(b *bytes.Buffer, s string) {
	b.WriteString("<![CDATA[")
	b.WriteString(strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>"))
	b.WriteString("]]>")
}

// LabelNames returns the label names embedded in a header's Caret label table (as written by
// WriteLabels or TotalSegmentator): names[i] is label i's name, "" where unnamed. It returns
// nil when the header has no such table.
func LabelNames(h *Header) []string {
	for _, e := range h.Extensions {
		data := bytes.TrimRight(e.Data, "\x00 \n\r\t")
		if !bytes.Contains(data, []byte("<CaretExtension")) {
			continue
		}
		var doc struct {
			Labels []struct {
				Key  int    `xml:"Key,attr"`
				Name string `xml:",chardata"`
			} `xml:"VolumeInformation>LabelTable>Label"`
		}
		if err := xml.Unmarshal(data, &doc); err != nil {
			continue
		}
		n := 0
		for _, l := range doc.Labels {
			if l.Key >= 0 && l.Key < 1<<16 {
				n = max(n, l.Key+1)
			}
		}
		names := make([]string, n)
		for _, l := range doc.Labels {
			if l.Key >= 0 && l.Key < n {
				names[l.Key] = strings.TrimSpace(l.Name)
			}
		}
		return names
	}
	return nil
}

// WriteColorTable writes a label colour table sidecar for names[i] / colors[i] (label i; label
// 0 is written fully transparent). The format follows the extension, since each viewer reads
// its own:
//   - .ctbl: 3D Slicer colour table ("index name R G B A", 0..255);
//   - .lut:  FSLeyes lookup table ("index r g b name", 0..1);
//   - anything else (e.g. .txt, .label): ITK-SNAP label description file (also read by
//     ITK-SNAP's "Import label descriptions" and by MITK).
func WriteColorTable(path string, names []string, colors [][3]uint8) error {
	fill, err := colorTable(path, names, colors)
	if err != nil {
		return err
	}
	return writeAtomic(path, false, 0, fill)
}

// EncodeColorTable writes WriteColorTable's file for path to w, for callers that commit
// several outputs together (atomicfile.Set).
func EncodeColorTable(w io.Writer, path string, names []string, colors [][3]uint8) error {
	fill, err := colorTable(path, names, colors)
	if err != nil {
		return err
	}
	return fill(w)
}

// colorTable checks names and colours and returns the writer of path's format.
func colorTable(path string, names []string, colors [][3]uint8) (func(w io.Writer) error, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("write color table %s: no names", path)
	}
	if len(colors) < len(names) {
		return nil, fmt.Errorf("write color table %s: %d colours for %d names", path, len(colors), len(names))
	}
	var fill func(w io.Writer) error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ctbl":
		fill = func(w io.Writer) error {
			fmt.Fprintf(w, "# Color table file %s\n# %d values\n", filepath.Base(path), len(names))
			for i, n := range names {
				c, a := colors[i], 255
				if i == 0 {
					a = 0
				}
				if _, err := fmt.Fprintf(w, "%d %s %d %d %d %d\n", i, token(n, i), c[0], c[1], c[2], a); err != nil {
					return err
				}
			}
			return nil
		}
	case ".lut":
		fill = func(w io.Writer) error {
			for i, n := range names {
				c := colors[i]
				if _, err := fmt.Fprintf(w, "%d %.5f %.5f %.5f %s\n", i, float64(c[0])/255, float64(c[1])/255,
					float64(c[2])/255, oneLine(n, i)); err != nil {
					return err
				}
			}
			return nil
		}
	default:
		fill = func(w io.Writer) error {
			io.WriteString(w, itkSnapPreamble)
			for i, n := range names {
				c := colors[i]
				a, vis := 1, 1
				if i == 0 {
					a, vis = 0, 0
				}
				name := strings.ReplaceAll(oneLine(n, i), `"`, "'")
				if _, err := fmt.Fprintf(w, "%5d %5d %4d %4d %8d %2d %2d    \"%s\"\n", i, c[0], c[1], c[2], a, vis, vis, name); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return fill, nil
}

const itkSnapPreamble = `################################################
# ITK-SnAP Label Description File
# File format:
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
# Fields:
#    IDX:   Zero-based index
#    -R-:   Red color component (0..255)
#    -G-:   Green color component (0..255)
#    -B-:   Blue color component (0..255)
#    -A-:   Label transparency (0.00 .. 1.00)
#    VIS:   Label visibility (0 or 1)
#    MSH:   Label mesh visibility (0 or 1)
#  LABEL:   Label description
################################################
`

// oneLine keeps a name on one line and never empty.
func oneLine(s string, i int) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return fmt.Sprintf("label_%d", i)
	}
	return s
}

// token makes a name a single whitespace-free token (Slicer's table splits on spaces).
func token(s string, i int) string {
	return strings.ReplaceAll(oneLine(s, i), " ", "_")
}
