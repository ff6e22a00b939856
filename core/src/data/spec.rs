//! The job file's `[data]` section: which dataset, its parameters, and how much is held out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use self::DatasetKind::{
    Csv, Digits, Idx, Libsvm, Mnist, SyntheticClassification, SyntheticLinear, Xor,
};
use super::csv::{CsvOptions, LabelColumn};
use super::idx::IdxFile;
use super::libsvm::LibsvmOptions;
use super::prepared::{PreparedData, SplitIndices};
use super::standardize::Standardization;
use super::synthetic::{self, ClusterProblem, LinearProblem};
use super::{
    DataError, Dataset, MAX_DATASET_VALUES, TaskKind, csv, digits, gzip, idx, libsvm, mnist, split,
    xor,
};

/// Which dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// The four XOR points, two classes (`test_fraction` defaults to 0: tested on the training set).
    Xor,
    /// `y = W x + b + noise` with known true weights (`samples`, `features`, `noise`).
    SyntheticLinear,
    /// Gaussian clusters, one per class (`samples`, `features`, `classes`, `noise`).
    SyntheticClassification,
    /// UCI optical digits, 8×8 images, 10 classes, shipped in the binary.
    Digits,
    /// A CSV file (`path`, `label_column`, `task`, `header`).
    Csv,
    /// A LibSVM/SVMlight file (`path`, `task`, optional `features`).
    Libsvm,
    /// A 5,000-image MNIST subset, 28×28 images, 10 classes, shipped in the binary.
    Mnist,
    /// MNIST-format IDX files, gzipped or not (`images`, `labels`).
    Idx,
}

impl DatasetKind {
    /// The name used in job files.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Xor => "xor",
            Self::SyntheticLinear => "synthetic_linear",
            Self::SyntheticClassification => "synthetic_classification",
            Self::Digits => "digits",
            Self::Csv => "csv",
            Self::Libsvm => "libsvm",
            Self::Mnist => "mnist",
            Self::Idx => "idx",
        }
    }

    /// The `test_fraction` when the job file gives none: 0 for XOR (four points leave
    /// nothing to hold out), 0.2 otherwise.
    #[must_use]
    pub fn default_test_fraction(self) -> f64 {
        match self {
            Self::Xor => 0.0,
            _ => 0.2,
        }
    }
}

/// The job file's `[data]` section: which dataset, and how much of it is held out.
///
/// Only the fields that apply to `kind` may be set ([`DataSpec::validate`]); unset ones
/// take the defaults in [`synthetic`], [`CsvOptions`] and [`LibsvmOptions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DataSection")]
pub struct DataSpec {
    /// Which dataset.
    pub kind: DatasetKind,
    /// Fraction of samples held out for testing, in `[0, 1)`; 0 tests on the training set.
    /// Default [`DatasetKind::default_test_fraction`]: 0 for XOR, 0.2 otherwise.
    pub test_fraction: f64,
    /// Synthetic datasets: number of samples, at least 1 (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    /// Synthetic datasets: number of features, at least 1 (default 8); LibSVM: the feature
    /// count, at least the largest index (default: the largest index seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<usize>,
    /// Synthetic classification: number of classes, at least 2 (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Synthetic datasets: standard deviation of the noise, finite and non-negative
    /// (default 0.01 for the regression targets, 0.1 for the clusters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<f32>,
    /// CSV and LibSVM: the file (required for them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// CSV: the label column, by header name or 0-based index (default: `label`, else the last column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// CSV and LibSVM: how labels are read (default classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskKind>,
    /// CSV: whether the first line is a header (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
    /// IDX: the images file (`train-images-idx3-ubyte`, or `.gz`; required for idx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
    /// IDX: the labels file (`train-labels-idx1-ubyte`, or `.gz`; required for idx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    /// Standardise each feature with the training split's mean and standard deviation
    /// (see [`Standardization`]); any kind (default false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub standardize: bool,
}

/// [`DataSpec`] as written in a job file (the same fields), where `test_fraction`'s
/// default depends on `kind` and unknown fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSection {
    /// As [`DataSpec::kind`].
    kind: DatasetKind,
    /// As [`DataSpec::test_fraction`]; `None` takes the kind's default.
    #[serde(default)]
    test_fraction: Option<f64>,
    /// As [`DataSpec::samples`].
    #[serde(default)]
    samples: Option<usize>,
    /// As [`DataSpec::features`].
    #[serde(default)]
    features: Option<usize>,
    /// As [`DataSpec::classes`].
    #[serde(default)]
    classes: Option<usize>,
    /// As [`DataSpec::noise`].
    #[serde(default)]
    noise: Option<f32>,
    /// As [`DataSpec::path`].
    #[serde(default)]
    path: Option<PathBuf>,
    /// As [`DataSpec::label_column`].
    #[serde(default)]
    label_column: Option<String>,
    /// As [`DataSpec::task`].
    #[serde(default)]
    task: Option<TaskKind>,
    /// As [`DataSpec::header`].
    #[serde(default)]
    header: Option<bool>,
    /// As [`DataSpec::images`].
    #[serde(default)]
    images: Option<PathBuf>,
    /// As [`DataSpec::labels`].
    #[serde(default)]
    labels: Option<PathBuf>,
    /// As [`DataSpec::standardize`].
    #[serde(default)]
    standardize: bool,
}

impl From<DataSection> for DataSpec {
    fn from(s: DataSection) -> Self {
        Self {
            kind: s.kind,
            test_fraction: s
                .test_fraction
                .unwrap_or_else(|| s.kind.default_test_fraction()),
            samples: s.samples,
            features: s.features,
            classes: s.classes,
            noise: s.noise,
            path: s.path,
            label_column: s.label_column,
            task: s.task,
            header: s.header,
            images: s.images,
            labels: s.labels,
            standardize: s.standardize,
        }
    }
}

impl Default for DataSpec {
    /// The built-in digits with a 20% test split.
    fn default() -> Self {
        Self::builtin(DatasetKind::Digits)
    }
}

/// A field that only some kinds take: its name, whether it is set, those kinds, and
/// the message's explanation.
type Applicability = (&'static str, bool, &'static [DatasetKind], &'static str);

impl DataSpec {
    /// A spec for `kind` with every optional field at its default.
    #[must_use]
    pub fn builtin(kind: DatasetKind) -> Self {
        Self {
            kind,
            test_fraction: kind.default_test_fraction(),
            samples: None,
            features: None,
            classes: None,
            noise: None,
            path: None,
            label_column: None,
            task: None,
            header: None,
            images: None,
            labels: None,
            standardize: false,
        }
    }

    /// Resolves relative file paths (`path`, `images`, `labels`) against `base`, the folder
    /// of the job file that names them; absolute paths are kept.
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.path, &mut self.images, &mut self.labels]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Checks the fields that apply to `kind`, and refuses the ones that do not.
    ///
    /// # Errors
    /// [`DataError::Invalid`] naming the field and value.
    pub fn validate(&self) -> Result<(), DataError> {
        let kind = self.kind.name();
        let applicability: [Applicability; 10] = [
            (
                "samples",
                self.samples.is_some(),
                &[SyntheticLinear, SyntheticClassification],
                "only synthetic_linear and synthetic_classification draw samples",
            ),
            (
                "features",
                self.features.is_some(),
                &[SyntheticLinear, SyntheticClassification, Libsvm],
                "only synthetic_linear, synthetic_classification and libsvm take a feature count",
            ),
            (
                "classes",
                self.classes.is_some(),
                &[SyntheticClassification],
                "only synthetic_classification takes a class count",
            ),
            (
                "noise",
                self.noise.is_some(),
                &[SyntheticLinear, SyntheticClassification],
                "only synthetic_linear and synthetic_classification add noise",
            ),
            (
                "path",
                self.path.is_some(),
                &[Csv, Libsvm],
                "only csv and libsvm read a file",
            ),
            (
                "label_column",
                self.label_column.is_some(),
                &[Csv],
                "only csv has a label column",
            ),
            (
                "task",
                self.task.is_some(),
                &[Csv, Libsvm],
                "only csv and libsvm take a task",
            ),
            (
                "header",
                self.header.is_some(),
                &[Csv],
                "only csv has a header",
            ),
            (
                "images",
                self.images.is_some(),
                &[Idx],
                "only idx reads an images file",
            ),
            (
                "labels",
                self.labels.is_some(),
                &[Idx],
                "only idx reads a labels file",
            ),
        ];
        for (field, set, kinds, explanation) in applicability {
            if set && !kinds.contains(&self.kind) {
                return Err(invalid(
                    field,
                    format!("{explanation}, got {field} for {kind}"),
                ));
            }
        }

        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(invalid(
                "test_fraction",
                format!("must be in [0, 1), got {}", self.test_fraction),
            ));
        }
        if matches!(self.kind, Csv | Libsvm) && self.path.is_none() {
            return Err(invalid(
                "path",
                format!("{kind} reads a file: set path to it"),
            ));
        }
        if self.kind == Idx {
            for (field, missing) in [
                ("images", self.images.is_none()),
                ("labels", self.labels.is_none()),
            ] {
                if missing {
                    return Err(invalid(
                        field,
                        format!(
                            "idx reads an images and a labels file: set {field} to the {field} file"
                        ),
                    ));
                }
            }
        }
        for (field, value) in [("samples", self.samples), ("features", self.features)] {
            if value == Some(0) {
                return Err(invalid(field, "must be at least 1, got 0".to_string()));
            }
        }
        if matches!(self.kind, SyntheticLinear | SyntheticClassification) {
            let features = self.features.unwrap_or(synthetic::DEFAULT_FEATURES);
            let classes = match self.kind {
                SyntheticClassification => self.classes.unwrap_or(synthetic::DEFAULT_CLASSES),
                _ => 0,
            };
            for (field, rows, what) in [
                (
                    "samples",
                    self.samples.unwrap_or(synthetic::DEFAULT_SAMPLES),
                    "samples",
                ),
                ("classes", classes, "class centres"),
            ] {
                let values = rows.saturating_mul(features);
                if values > MAX_DATASET_VALUES {
                    return Err(invalid(
                        field,
                        format!(
                            "{rows} {what} × {features} features would be {values} values, \
                             more than the {MAX_DATASET_VALUES} a dataset may hold"
                        ),
                    ));
                }
            }
        }
        if let Some(classes) = self.classes
            && classes < 2
        {
            return Err(invalid(
                "classes",
                format!("must be at least 2, got {classes}"),
            ));
        }
        if let Some(noise) = self.noise
            && !(noise.is_finite() && noise >= 0.0)
        {
            return Err(invalid(
                "noise",
                format!("must be finite and non-negative, got {noise}"),
            ));
        }
        if self.header == Some(false)
            && let LabelColumn::Name(name) = self.label_column()
        {
            return Err(invalid(
                "label_column",
                format!("\"{name}\" names a column, but header = false; give a 0-based index"),
            ));
        }
        Ok(())
    }

    /// Makes or reads the whole dataset. Synthetic data is drawn from `seed`.
    ///
    /// # Errors
    /// [`DataError`] for an invalid spec, an unreadable or malformed file.
    pub fn load(&self, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        Ok(match self.kind {
            Xor => xor::xor(),
            SyntheticLinear => LinearProblem {
                samples: self.samples.unwrap_or(synthetic::DEFAULT_SAMPLES),
                features: self.features.unwrap_or(synthetic::DEFAULT_FEATURES),
                noise: self.noise.unwrap_or(synthetic::DEFAULT_LINEAR_NOISE),
            }
            .generate(seed),
            SyntheticClassification => ClusterProblem {
                samples: self.samples.unwrap_or(synthetic::DEFAULT_SAMPLES),
                features: self.features.unwrap_or(synthetic::DEFAULT_FEATURES),
                classes: self.classes.unwrap_or(synthetic::DEFAULT_CLASSES),
                noise: self.noise.unwrap_or(synthetic::DEFAULT_CLUSTER_NOISE),
            }
            .generate(seed),
            Digits => digits::digits(),
            Mnist => mnist::mnist(),
            Idx => {
                let (images, images_label) =
                    read_bytes(self.images.as_deref().expect("validate requires images"))?;
                let (labels, labels_label) =
                    read_bytes(self.labels.as_deref().expect("validate requires labels"))?;
                idx::parse(
                    IdxFile {
                        path: &images_label,
                        bytes: &images,
                    },
                    IdxFile {
                        path: &labels_label,
                        bytes: &labels,
                    },
                )?
            }
            Csv => {
                let (text, label) = self.read_file()?;
                let options = CsvOptions {
                    header: self.header.unwrap_or(true),
                    label_column: self.label_column(),
                    task: self.task.unwrap_or_default(),
                };
                csv::parse(&text, &label, &options)?
            }
            Libsvm => {
                let (text, label) = self.read_file()?;
                let options = LibsvmOptions {
                    task: self.task.unwrap_or_default(),
                    features: self.features,
                };
                libsvm::parse(&text, &label, &options)?
            }
        })
    }

    /// Loads the dataset and splits it into (train, test) by `test_fraction` and `seed`,
    /// standardised when [`DataSpec::standardize`] is set.
    ///
    /// # Errors
    /// As [`DataSpec::load`].
    pub fn load_split(&self, seed: u64) -> Result<(Dataset, Dataset), DataError> {
        let prepared = self.prepare(seed, None)?;
        Ok((prepared.train, prepared.test))
    }

    /// Loads the dataset, splits it by `test_fraction` and `seed`, and, when
    /// [`DataSpec::standardize`] is set, standardises both splits with `statistics` (saved
    /// with trained weights) or, when `None`, with the training split's own.
    ///
    /// # Errors
    /// As [`DataSpec::load`]; [`DataError::Invalid`] for statistics of another feature
    /// count, or statistics given to a job that does not standardise.
    pub fn prepare(
        &self,
        seed: u64,
        statistics: Option<Standardization>,
    ) -> Result<PreparedData, DataError> {
        let all = self.load(seed)?;
        let (train_indices, test_indices) =
            split::split_indices(all.len(), self.test_fraction, seed);
        let mut train = all.select(&train_indices);
        let mut test = all.select(&test_indices);
        let standardization = match (self.standardize, statistics) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(invalid(
                    "standardize",
                    "statistics were given, but the job does not standardise".to_string(),
                ));
            }
            (true, given) => {
                let stats = given.unwrap_or_else(|| Standardization::fit(&train.features));
                stats.apply(&mut train.features)?;
                stats.apply(&mut test.features)?;
                Some(stats)
            }
        };
        Ok(PreparedData {
            train,
            test,
            split: SplitIndices {
                train: train_indices,
                test: test_indices,
            },
            standardization,
        })
    }

    /// The CSV label column this spec selects.
    fn label_column(&self) -> LabelColumn {
        LabelColumn::from_spec(self.label_column.as_deref())
    }

    /// The text of the file at `path`, and the path as error messages show it.
    fn read_file(&self) -> Result<(String, String), DataError> {
        let path: &Path = self
            .path
            .as_deref()
            .expect("validate requires a path for file kinds");
        let label = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((text, label)),
            Err(source) => Err(DataError::Io {
                path: label,
                source,
            }),
        }
    }
}

/// The bytes of the file at `path`, decompressed when gzipped, and the path as error
/// messages show it.
fn read_bytes(path: &Path) -> Result<(Vec<u8>, String), DataError> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: label.clone(),
        source,
    })?;
    Ok((gzip::decompress_if_gzip(bytes, &label)?, label))
}

fn invalid(field: &'static str, reason: String) -> DataError {
    DataError::Invalid { field, reason }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::data::{Targets, Task};

    fn spec(kind: DatasetKind) -> DataSpec {
        DataSpec::builtin(kind)
    }

    fn error(spec: &DataSpec) -> String {
        spec.validate().unwrap_err().to_string()
    }

    #[test]
    fn refuses_fields_that_do_not_apply_to_the_kind() {
        let with_path = DataSpec {
            path: Some("x.csv".into()),
            ..spec(Digits)
        };
        assert_eq!(
            error(&with_path),
            "data.path: only csv and libsvm read a file, got path for digits"
        );
        let with_classes = DataSpec {
            classes: Some(3),
            ..spec(SyntheticLinear)
        };
        assert_eq!(
            error(&with_classes),
            "data.classes: only synthetic_classification takes a class count, got classes for synthetic_linear"
        );
        let with_header = DataSpec {
            header: Some(true),
            path: Some("a.svm".into()),
            ..spec(Libsvm)
        };
        assert_eq!(
            error(&with_header),
            "data.header: only csv has a header, got header for libsvm"
        );
        let with_samples = DataSpec {
            samples: Some(10),
            ..spec(Xor)
        };
        assert_eq!(
            error(&with_samples),
            "data.samples: only synthetic_linear and synthetic_classification draw samples, got samples for xor"
        );
    }

    #[test]
    fn refuses_out_of_range_values_naming_field_and_value() {
        let cases = [
            (
                DataSpec {
                    test_fraction: 1.0,
                    ..spec(Digits)
                },
                "data.test_fraction: must be in [0, 1), got 1",
            ),
            (
                DataSpec {
                    test_fraction: -0.1,
                    ..spec(Digits)
                },
                "data.test_fraction: must be in [0, 1), got -0.1",
            ),
            (
                DataSpec {
                    test_fraction: f64::NAN,
                    ..spec(Digits)
                },
                "data.test_fraction: must be in [0, 1), got NaN",
            ),
            (spec(Csv), "data.path: csv reads a file: set path to it"),
            (
                DataSpec {
                    samples: Some(0),
                    ..spec(SyntheticLinear)
                },
                "data.samples: must be at least 1, got 0",
            ),
            (
                DataSpec {
                    features: Some(0),
                    ..spec(SyntheticClassification)
                },
                "data.features: must be at least 1, got 0",
            ),
            (
                DataSpec {
                    classes: Some(1),
                    ..spec(SyntheticClassification)
                },
                "data.classes: must be at least 2, got 1",
            ),
            (
                DataSpec {
                    noise: Some(-0.5),
                    ..spec(SyntheticLinear)
                },
                "data.noise: must be finite and non-negative, got -0.5",
            ),
            (
                DataSpec {
                    noise: Some(f32::INFINITY),
                    ..spec(SyntheticClassification)
                },
                "data.noise: must be finite and non-negative, got inf",
            ),
            (
                DataSpec {
                    path: Some("a.csv".into()),
                    header: Some(false),
                    label_column: Some("target".into()),
                    ..spec(Csv)
                },
                "data.label_column: \"target\" names a column, but header = false; give a 0-based index",
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(error(&spec), expected);
        }
    }

    #[test]
    fn job_file_defaults_depend_on_the_kind() {
        let parse = |json: &str| serde_json::from_str::<DataSpec>(json).unwrap();
        assert_eq!(parse(r#"{"kind": "xor"}"#), spec(Xor));
        assert_eq!(parse(r#"{"kind": "xor"}"#).test_fraction, 0.0);
        assert_eq!(parse(r#"{"kind": "digits"}"#), DataSpec::default());
        assert_eq!(DataSpec::default().test_fraction, 0.2);
        let csv = parse(
            r#"{"kind": "csv", "path": "a.csv", "test_fraction": 0.5, "task": "regression"}"#,
        );
        assert_eq!(csv.test_fraction, 0.5);
        assert_eq!(csv.task, Some(TaskKind::Regression));
        let err = serde_json::from_str::<DataSpec>(r#"{"kind": "xor", "sample": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `sample`"), "{err}");
        let round_trip: DataSpec =
            serde_json::from_str(&serde_json::to_string(&csv).unwrap()).unwrap();
        assert_eq!(round_trip, csv);
    }

    #[test]
    fn loads_every_builtin_with_its_defaults() {
        let shapes = [
            (Xor, 4, 2, Task::Classification { classes: 2 }),
            (SyntheticLinear, 1000, 8, Task::Regression { outputs: 1 }),
            (
                SyntheticClassification,
                1000,
                8,
                Task::Classification { classes: 3 },
            ),
            (Digits, 1797, 64, Task::Classification { classes: 10 }),
        ];
        for (kind, samples, features, task) in shapes {
            let data = spec(kind).load(1).unwrap();
            assert_eq!(data.len(), samples, "{kind:?}");
            assert_eq!(data.shape().features, features, "{kind:?}");
            assert_eq!(data.shape().task, task, "{kind:?}");
        }
        let custom = DataSpec {
            samples: Some(30),
            features: Some(2),
            classes: Some(4),
            noise: Some(0.0),
            ..spec(SyntheticClassification)
        };
        let data = custom.load(1).unwrap();
        assert_eq!(data.shape().task, Task::Classification { classes: 4 });
        assert_eq!(data.features.dim(), (30, 2));
    }

    #[test]
    fn load_split_holds_out_the_test_fraction() {
        let (train, test) = spec(Digits).load_split(7).unwrap();
        assert_eq!((train.len(), test.len()), (1438, 359));
        let (train, test) = spec(Xor).load_split(7).unwrap();
        assert_eq!(train.len(), 4);
        assert_eq!(train, test);
    }

    #[test]
    fn reads_csv_and_libsvm_files_from_disk() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "x1,x2,label\n1,2,1\n3,4,0\n5,6,2\n").unwrap();
        let csv = DataSpec {
            path: Some(file.path().to_path_buf()),
            test_fraction: 0.0,
            ..spec(Csv)
        };
        let data = csv.load(0).unwrap();
        assert_eq!(
            data.features,
            ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
        );
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![1, 0, 2],
                classes: 3
            }
        );

        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "+1 1:1\n-1 3:1\n-1 2:x\n").unwrap();
        let libsvm = DataSpec {
            path: Some(file.path().to_path_buf()),
            ..spec(Libsvm)
        };
        let err = libsvm.load(0).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:3: value in \"2:x\": expected a number, got \"x\"",
                file.path().display()
            )
        );
    }

    #[test]
    fn mnist_is_built_in_with_its_image_shape() {
        let (train, test) = spec(Mnist).load_split(0).unwrap();
        assert_eq!((train.len(), test.len()), (4000, 1000));
        assert_eq!(train.shape().features, 784);
        assert_eq!(train.shape().image, Some(mnist::IMAGE));
        assert_eq!(train.shape().task, Task::Classification { classes: 10 });
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn reads_idx_files_gzipped_or_not_and_names_a_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..40u8).map(|p| p * 6).collect();
        let images = idx::encode(idx::IMAGES_MAGIC, &[10, 2, 2], &pixels);
        let labels = idx::encode(idx::LABELS_MAGIC, &[10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let plain = DataSpec {
            images: Some(write("img-idx3-ubyte", &images)),
            labels: Some(write("lab-idx1-ubyte", &labels)),
            ..spec(Idx)
        };
        let zipped = DataSpec {
            images: Some(write("img-idx3-ubyte.gz", &gzip(&images))),
            labels: Some(write("lab-idx1-ubyte.gz", &gzip(&labels))),
            ..spec(Idx)
        };
        let a = plain.load(0).unwrap();
        assert_eq!(a, zipped.load(0).unwrap());
        assert_eq!(a.features.dim(), (10, 4));
        assert_eq!(a.features[[9, 3]], 234.0 / 255.0);
        assert_eq!(a.shape().task, Task::Classification { classes: 10 });
        assert_eq!(
            a.shape().image.map(|i| (i.channels, i.height, i.width)),
            Some((1, 2, 2))
        );

        let truncated = write("cut.gz", &gzip(&images[..images.len() - 3]));
        let damaged = DataSpec {
            images: Some(truncated.clone()),
            ..zipped.clone()
        };
        assert_eq!(
            damaged.load(0).unwrap_err().to_string(),
            format!(
                "{}: truncated: 10 images of 2×2 need 40 bytes after the 16-byte header, the file has 37",
                truncated.display()
            )
        );
        let mut cut_gzip = gzip(&images);
        cut_gzip.truncate(cut_gzip.len() - 10);
        let broken = write("broken.gz", &cut_gzip);
        let err = DataSpec {
            images: Some(broken.clone()),
            ..zipped
        }
        .load(0)
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!(
                "{}:0: corrupt or truncated gzip data",
                broken.display()
            )),
            "{err}"
        );
        assert_eq!(
            error(&DataSpec {
                labels: None,
                ..plain.clone()
            }),
            "data.labels: idx reads an images and a labels file: set labels to the labels file"
        );
        assert_eq!(
            error(&DataSpec {
                images: Some("x".into()),
                ..spec(Mnist)
            }),
            "data.images: only idx reads an images file, got images for mnist"
        );
    }

    #[test]
    fn standardises_with_the_training_split_statistics() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut text = String::from("small,large,constant,label\n");
        for i in 0..40 {
            text += &format!("{},{},3,{}\n", i as f32 * 0.01, 1000 + 50 * i, i % 2);
        }
        write!(file, "{text}").unwrap();
        let plain = DataSpec {
            path: Some(file.path().to_path_buf()),
            test_fraction: 0.25,
            ..spec(Csv)
        };
        let scaled = DataSpec {
            standardize: true,
            ..plain.clone()
        };
        let raw = plain.prepare(4, None).unwrap();
        assert!(raw.standardization.is_none());
        let prepared = scaled.prepare(4, None).unwrap();
        assert_eq!(prepared.split, raw.split);
        let stats = prepared.standardization.clone().unwrap();
        assert_eq!(stats, Standardization::fit(&raw.train.features));
        assert_eq!(stats.std[2], 0.0);
        let mut expected_test = raw.test.features.clone();
        stats.apply(&mut expected_test).unwrap();
        assert_eq!(prepared.test.features, expected_test);
        assert!(prepared.train.features.column(2).iter().all(|&x| x == 0.0));
        let train_mean: f32 = prepared.train.features.column(1).sum() / 30.0;
        assert!(train_mean.abs() < 1e-5, "{train_mean}");
        // Saved statistics reproduce the same data.
        let again = scaled.prepare(4, Some(stats.clone())).unwrap();
        assert_eq!(again.test.features, prepared.test.features);
        assert_eq!(
            plain.prepare(4, Some(stats)).unwrap_err().to_string(),
            "data.standardize: statistics were given, but the job does not standardise"
        );
        let (train, _) = scaled.load_split(4).unwrap();
        assert_eq!(train.features, prepared.train.features);
    }

    #[test]
    fn relative_paths_resolve_against_the_job_folder() {
        let mut data = DataSpec {
            path: Some("data/iris.csv".into()),
            ..spec(Csv)
        };
        data.resolve_paths(Path::new("/jobs"));
        assert_eq!(data.path.as_deref(), Some(Path::new("/jobs/data/iris.csv")));
        let mut data = DataSpec {
            images: Some("/abs/images".into()),
            labels: Some("labels".into()),
            ..spec(Idx)
        };
        data.resolve_paths(Path::new("/jobs"));
        assert_eq!(data.images.as_deref(), Some(Path::new("/abs/images")));
        assert_eq!(data.labels.as_deref(), Some(Path::new("/jobs/labels")));
    }

    #[test]
    fn reports_a_missing_file_with_its_path() {
        let missing = DataSpec {
            path: Some("/nonexistent/downpour/train.csv".into()),
            ..spec(Csv)
        };
        let err = missing.load(0).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read /nonexistent/downpour/train.csv: "),
            "{err}"
        );
    }

    #[test]
    fn synthetic_data_larger_than_the_dataset_bound_is_refused_before_it_is_drawn() {
        let spec = |kind, samples, features, classes| DataSpec {
            samples,
            features,
            classes,
            ..DataSpec::builtin(kind)
        };
        let err = spec(SyntheticLinear, Some(1 << 40), None, None)
            .load(0)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "data.samples: 1099511627776 samples × 8 features would be 8796093022208 values, \
             more than the 268435456 a dataset may hold"
        );
        let err = spec(
            SyntheticClassification,
            Some(10),
            Some(1 << 20),
            Some(1 << 9),
        )
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "data.classes: 512 class centres × 1048576 features would be 536870912 values, \
             more than the 268435456 a dataset may hold"
        );
        spec(
            SyntheticClassification,
            Some(1 << 8),
            Some(1 << 20),
            Some(2),
        )
        .validate()
        .unwrap();
    }
}
