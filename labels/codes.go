package labels

import (
	"fmt"
	"strings"
)

// Code is a coded concept: a code value in a coding scheme, with its meaning (DICOM's Code
// Sequence Macro).
type Code struct {
	Value, Scheme, Meaning string
}

// Coding says what a class is in terms a PACS or a DICOM viewer understands: the property's
// category and type (SNOMED CT), and a laterality modifier for paired structures.
type Coding struct {
	Category, Type Code
	Modifier       *Code // Left or Right, nil for unpaired structures
}

// The category of every class, and the laterality modifiers.
var (
	anatomicalStructure = Code{"123037004", "SCT", "Anatomical Structure"}
	left                = Code{"7771000", "SCT", "Left"}
	right               = Code{"24028007", "SCT", "Right"}
)

// Codings[i] is the coding of class i (the zero Coding for background). The SNOMED CT codes
// are those TotalSegmentator's DICOM export gives the same 104 structures
// (resources/totalsegmentator_snomed_mapping.csv, Apache-2.0): the bundle was trained on its
// dataset under the same names, and viewers that know one tool's segments then know the other's.
var Codings = makeCodings()

// structureCodes maps a class name without its _left/_right suffix to its SNOMED CT type code
// and meaning.
var structureCodes = map[string][2]string{
	"spleen":                       {"78961009", "Spleen"},
	"kidney":                       {"64033007", "Kidney"},
	"gallbladder":                  {"28231008", "Gallbladder"},
	"liver":                        {"10200004", "Liver"},
	"stomach":                      {"69695003", "Stomach"},
	"aorta":                        {"15825003", "Aorta"},
	"inferior_vena_cava":           {"64131007", "Inferior vena cava"},
	"portal_vein_and_splenic_vein": {"110765007", "Portal vein and splenic vein"},
	"pancreas":                     {"15776009", "Pancreas"},
	"adrenal_gland":                {"23451007", "Adrenal gland"},
	"lung_upper_lobe":              {"45653009", "Upper lobe of lung"},
	"lung_lower_lobe":              {"90572001", "Lower lobe of lung"},
	"lung_middle_lobe_right":       {"72481006", "Middle lobe of right lung"},
	"vertebrae_L5":                 {"49668003", "L5 vertebra"},
	"vertebrae_L4":                 {"11994002", "L4 vertebra"},
	"vertebrae_L3":                 {"36470004", "L3 vertebra"},
	"vertebrae_L2":                 {"14293000", "L2 vertebra"},
	"vertebrae_L1":                 {"66794005", "L1 vertebra"},
	"vertebrae_T12":                {"23215003", "T12 vertebra"},
	"vertebrae_T11":                {"12989004", "T11 vertebra"},
	"vertebrae_T10":                {"7610001", "T10 vertebra"},
	"vertebrae_T9":                 {"82687006", "T9 vertebra"},
	"vertebrae_T8":                 {"11068009", "T8 vertebra"},
	"vertebrae_T7":                 {"62487009", "T7 vertebra"},
	"vertebrae_T6":                 {"45296009", "T6 vertebra"},
	"vertebrae_T5":                 {"56401006", "T5 vertebra"},
	"vertebrae_T4":                 {"73071006", "T4 vertebra"},
	"vertebrae_T3":                 {"1626008", "T3 vertebra"},
	"vertebrae_T2":                 {"53733008", "T2 vertebra"},
	"vertebrae_T1":                 {"64864005", "T1 vertebra"},
	"vertebrae_C7":                 {"87391001", "C7 vertebra"},
	"vertebrae_C6":                 {"36054005", "C6 vertebra"},
	"vertebrae_C5":                 {"36978003", "C5 vertebra"},
	"vertebrae_C4":                 {"5329002", "C4 vertebra"},
	"vertebrae_C3":                 {"113205007", "C3 vertebra"},
	"vertebrae_C2":                 {"39976000", "C2 vertebra"},
	"vertebrae_C1":                 {"14806007", "C1 vertebra"},
	"esophagus":                    {"32849002", "Esophagus"},
	"trachea":                      {"44567001", "Trachea"},
	"heart_myocardium":             {"74281007", "Myocardium"},
	"heart_atrium_left":            {"82471001", "Left atrium"},
	"heart_ventricle_left":         {"87878005", "Left ventricle of heart"},
	"heart_atrium_right":           {"73829009", "Right atrium"},
	"heart_ventricle_right":        {"53085002", "Right ventricle of heart"},
	"pulmonary_artery":             {"81040000", "Pulmonary artery"},
	"brain":                        {"12738006", "Brain"},
	"iliac_artery":                 {"73634005", "Common iliac artery"},
	"iliac_vena":                   {"46027005", "Common iliac vein"},
	"small_bowel":                  {"30315005", "Small intestine"},
	"duodenum":                     {"38848004", "Duodenum"},
	"colon":                        {"71854001", "Colon"},
	"rib_1":                        {"48535007", "First rib"},
	"rib_2":                        {"78247007", "Second rib"},
	"rib_3":                        {"25888004", "Third rib"},
	"rib_4":                        {"25523003", "Fourth rib"},
	"rib_5":                        {"15339008", "Fifth rib"},
	"rib_6":                        {"59558009", "Sixth rib"},
	"rib_7":                        {"24915002", "Seventh rib"},
	"rib_8":                        {"5953002", "Eighth rib"},
	"rib_9":                        {"22565002", "Ninth rib"},
	"rib_10":                       {"77644006", "Tenth rib"},
	"rib_11":                       {"58830002", "Eleventh rib"},
	"rib_12":                       {"43993008", "Twelfth rib"},
	"humerus":                      {"85050009", "Humerus"},
	"scapula":                      {"79601000", "Scapula"},
	"clavicula":                    {"51299004", "Clavicle"},
	"femur":                        {"71341001", "Femur"},
	"hip":                          {"29836001", "Hip"},
	"sacrum":                       {"54735007", "Sacrum"},
	"face":                         {"89545001", "Face"},
	"gluteus_maximus":              {"181674001", "Gluteus maximus muscle"},
	"gluteus_medius":               {"78333006", "Gluteus medius muscle"},
	"gluteus_minimus":              {"75297007", "Gluteus minimus muscle"},
	"autochthon":                   {"244849004", "Deep muscle of back"},
	"iliopsoas":                    {"68455001", "Iliopsoas muscle"},
	"urinary_bladder":              {"89837001", "Urinary bladder"},
}

// makeCodings codes every class by its name: a _left or _right anywhere in it (rib_left_3,
// lung_middle_lobe_right) is the laterality, the rest the structure. The heart's chambers
// keep their side in the name: SNOMED codes the left atrium as a structure of its own.
func makeCodings() []Coding {
	out := make([]Coding, Count)
	for i := 1; i < Count; i++ {
		name := Names[i]
		c := Coding{Category: anatomicalStructure}
		if tc, ok := structureCodes[name]; ok {
			c.Type = Code{tc[0], "SCT", tc[1]}
			out[i] = c
			continue
		}
		base := name
		for side, mod := range map[string]*Code{"_left": &left, "_right": &right} {
			if b, ok := strings.CutSuffix(name, side); ok {
				base, c.Modifier = b, mod
			} else if b, a, ok := strings.Cut(name, side+"_"); ok {
				base, c.Modifier = b+"_"+a, mod
			}
		}
		tc, ok := structureCodes[base]
		if !ok || c.Modifier == nil {
			panic(fmt.Sprintf("labels: no SNOMED CT code for class %d %q", i, name)) // a table bug
		}
		c.Type = Code{tc[0], "SCT", tc[1]}
		out[i] = c
	}
	return out
}
