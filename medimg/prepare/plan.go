package prepare

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/segsam/segsam/medimg"
)

// labelSuffixes mark label maps stored next to their volumes
// (<stem>_label.nii.gz and so on).
var labelSuffixes = []string{"_label", "_labels", "_seg", "_mask", "_gt"}

// Plan lists the jobs for volume: a NIfTI file, a DICOM series directory,
// or a folder of volumes (NIfTI files and DICOM series subdirectories).
//
// labels, when given, is the label map of a single volume, or a folder in
// which each volume's label map has the volume's file name or its stem plus
// _label, _seg or _mask. Without it, a volume's label map is the one that
// names (a labels.json with a "volumes" object) records, else, in a folder
// of volumes, a sibling file <stem>_label.nii.gz (or _seg, _mask, ...);
// those label files are not sliced as volumes themselves. modality, when
// given, applies to every volume; otherwise the labels.json entry or the
// DICOM header says.
func Plan(volume, labels string, names *LabelNames, modality string) ([]Job, error) {
	st, err := os.Stat(volume)
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	var labelsDir bool
	if labels != "" {
		ls, err := os.Stat(labels)
		if err != nil {
			return nil, fmt.Errorf("labels: %w", err)
		}
		labelsDir = ls.IsDir()
	}
	single := !st.IsDir()
	if st.IsDir() {
		folder, err := isVolumeFolder(volume)
		if err != nil {
			return nil, err
		}
		single = !folder
	}
	if single {
		job := Job{Volume: volume, Modality: modality}
		switch {
		case labels != "" && !labelsDir:
			job.Labels = labels
		case labels != "":
			job.Labels = findLabel(labels, volume)
			if job.Labels == "" {
				return nil, fmt.Errorf("no label map for %s in %s (want %s or %s_label.nii.gz)", volume, labels, filepath.Base(volume), StemName(volume))
			}
		default:
			job.Labels = recordedLabel(names, volume)
		}
		return []Job{finish(job, names)}, nil
	}
	if labels != "" && !labelsDir {
		return nil, fmt.Errorf("--labels %s is a file but --volume %s is a folder of volumes: give a folder of label maps", labels, volume)
	}
	entries, err := os.ReadDir(volume)
	if err != nil {
		return nil, err
	}
	// Files that are label maps of other volumes are not volumes.
	isLabel := map[string]bool{}
	if names != nil {
		for _, e := range names.Volumes {
			if e.Label != "" {
				isLabel[filepath.Base(e.Label)] = true
			}
		}
	}
	var jobs []Job
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(volume, name)
		if strings.HasPrefix(name, ".") {
			continue
		}
		if !e.IsDir() && !medimg.IsNIfTIPath(name) {
			continue
		}
		if isLabel[name] || hasLabelSuffix(rawStem(name)) {
			continue
		}
		job := Job{Volume: p, Modality: modality}
		switch {
		case labels != "":
			job.Labels = findLabel(labels, p)
		default:
			job.Labels = recordedLabel(names, p)
			if job.Labels == "" {
				job.Labels = findLabel(volume, p)
			}
		}
		jobs = append(jobs, finish(job, names))
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("no volumes (NIfTI files or DICOM series folders) in %s", volume)
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].Volume < jobs[b].Volume })
	return jobs, nil
}

// finish fills a job's modality and class names from the labels.json.
func finish(job Job, names *LabelNames) Job {
	if names != nil {
		if job.Modality == "" {
			job.Modality = names.Volumes[filepath.Base(job.Volume)].Modality
		}
		if job.Labels != "" {
			job.Names, job.namesNote = names.namesForJob(job.Volume, job.Labels)
		}
	}
	return job
}

// isVolumeFolder reports whether dir holds volumes (NIfTI files or
// subdirectories) rather than the files of one DICOM series.
func isVolumeFolder(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() || medimg.IsNIfTIPath(e.Name()) {
			return true, nil
		}
	}
	return false, nil
}

func hasLabelSuffix(stem string) bool {
	l := strings.ToLower(stem)
	for _, s := range labelSuffixes {
		if strings.HasSuffix(l, s) {
			return true
		}
	}
	return false
}

// recordedLabel returns the label map a labels.json records for a volume,
// resolved against the volume's directory, or "".
func recordedLabel(names *LabelNames, volume string) string {
	if names == nil {
		return ""
	}
	e, ok := names.Volumes[filepath.Base(volume)]
	if !ok || e.Label == "" {
		return ""
	}
	if filepath.IsAbs(e.Label) {
		return e.Label
	}
	return filepath.Join(filepath.Dir(volume), e.Label)
}

// findLabel looks in dir for the label map of volume: a file of the same
// name (when dir is not the volume's own folder), or its stem plus one of
// labelSuffixes with a NIfTI extension.
func findLabel(dir, volume string) string {
	base := filepath.Base(volume)
	if filepath.Clean(dir) != filepath.Clean(filepath.Dir(volume)) {
		if p := filepath.Join(dir, base); exists(p) {
			return p
		}
	}
	stem := rawStem(volume)
	for _, s := range labelSuffixes {
		for _, ext := range []string{".nii.gz", ".nii"} {
			if p := filepath.Join(dir, stem+s+ext); exists(p) {
				return p
			}
		}
	}
	return ""
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
