//! CSV files: numeric feature columns and one label column.
//!
//! The dialect is the one numeric tables are written in: comma-separated fields,
//! surrounding whitespace and one pair of surrounding double quotes ignored (no commas
//! or newlines inside quotes), `\n` or `\r\n` line ends, a leading byte-order mark
//! ignored, blank lines skipped. Parsing works on text so that tests need no files;
//! errors name the file and 1-based line, and quote the offending field.

use ndarray::Array2;

use super::spec::TaskKind;
use super::{DataError, Dataset, Targets, field};

/// The header name [`LabelColumn::Default`] looks for.
pub const DEFAULT_LABEL_NAME: &str = "label";

/// Which column of a CSV file holds the labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LabelColumn {
    /// The column named [`DEFAULT_LABEL_NAME`] if the header has one, else the last column.
    #[default]
    Default,
    /// The column whose header is exactly this name.
    Name(String),
    /// The column at this 0-based index.
    Index(usize),
}

impl LabelColumn {
    /// Reads the job file's `label_column`: a 0-based index when it is an integer, else a header name.
    #[must_use]
    pub fn from_spec(value: Option<&str>) -> Self {
        match value {
            None => Self::Default,
            Some(text) => text
                .trim()
                .parse::<usize>()
                .map_or_else(|_| Self::Name(text.to_string()), Self::Index),
        }
    }
}

/// How a CSV file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether the first non-blank line is a header of column names.
    pub header: bool,
    /// Which column holds the labels; every other column is a feature.
    pub label_column: LabelColumn,
    /// Whether labels are class indices or real-valued regression targets.
    pub task: TaskKind,
}

impl Default for CsvOptions {
    /// A header, the `label` column (else the last), classification.
    fn default() -> Self {
        Self {
            header: true,
            label_column: LabelColumn::Default,
            task: TaskKind::Classification,
        }
    }
}

/// One non-blank line split into fields.
struct Row<'a> {
    /// 1-based line number in the file.
    line: usize,
    /// The fields, trimmed and unquoted.
    fields: Vec<&'a str>,
}

/// Parses CSV `text`; `path` only labels error messages.
///
/// Classification labels become classes `0..k` with `k` the largest label + 1;
/// regression labels become one target column.
///
/// # Errors
/// [`DataError::Parse`] naming `path` and the line for an empty file (line 0), a missing
/// label column, a row with a different number of fields than the first, a feature that
/// is not a finite number, or a label that is not a valid class (or number, for regression).
/// [`DataError::Invalid`] when a label column is chosen by name in a file without a header.
pub fn parse(text: &str, path: &str, options: &CsvOptions) -> Result<Dataset, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| Row {
            line: i + 1,
            fields: line.split(',').map(unquote).collect(),
        });
    let header = if options.header {
        let header = rows
            .next()
            .ok_or_else(|| DataError::parse(path, 0, "empty file: expected a header line"))?;
        Some(header)
    } else {
        None
    };
    let rows: Vec<Row<'_>> = rows.collect();
    let Some(first_row) = rows.first() else {
        let reason = if header.is_some() {
            "no data rows after the header"
        } else {
            "empty file: no data rows"
        };
        return Err(DataError::parse(path, 0, reason));
    };
    let first = header.as_ref().unwrap_or(first_row);
    let width = first.fields.len();
    if width < 2 {
        return Err(DataError::parse(
            path,
            first.line,
            format!("expected at least 2 columns (features and a label), got {width}"),
        ));
    }
    let names = header.as_ref().map(|h| h.fields.as_slice());
    let label = label_index(&options.label_column, names, width, path, first.line)?;
    let column = |j: usize| match names {
        Some(names) => format!("column {j} (\"{}\")", names[j]),
        None => format!("column {j}"),
    };

    let mut features = Vec::with_capacity(rows.len() * (width - 1));
    let mut labels = Vec::with_capacity(rows.len());
    let mut targets = Vec::new();
    for row in &rows {
        if row.fields.len() != width {
            return Err(DataError::parse(
                path,
                row.line,
                format!(
                    "expected {width} fields, as on line {}, got {}",
                    first.line,
                    row.fields.len()
                ),
            ));
        }
        for (j, text) in row.fields.iter().enumerate() {
            let at = |reason: String| {
                DataError::parse(path, row.line, format!("{}: {reason}", column(j)))
            };
            if j != label {
                features.push(field::number(text).map_err(at)?);
            } else {
                match options.task {
                    TaskKind::Classification => labels.push(field::class_label(text).map_err(at)?),
                    TaskKind::Regression => {
                        targets.push(field::number(text).map_err(at)?);
                    }
                }
            }
        }
    }

    let features = Array2::from_shape_vec((rows.len(), width - 1), features)
        .expect("every row has width - 1 features");
    let targets = match options.task {
        TaskKind::Classification => Targets::Classes {
            classes: labels.iter().max().map_or(0, |&max| max + 1),
            labels,
        },
        TaskKind::Regression => Targets::Regression(
            Array2::from_shape_vec((rows.len(), 1), targets).expect("one target per row"),
        ),
    };
    Ok(Dataset {
        features,
        targets,
        image: None,
    })
}

/// The 0-based index of the label column among `width` columns.
fn label_index(
    choice: &LabelColumn,
    names: Option<&[&str]>,
    width: usize,
    path: &str,
    first_line: usize,
) -> Result<usize, DataError> {
    match (choice, names) {
        (LabelColumn::Default, Some(names)) => Ok(names
            .iter()
            .position(|&n| n == DEFAULT_LABEL_NAME)
            .unwrap_or(width - 1)),
        (LabelColumn::Default, None) => Ok(width - 1),
        (LabelColumn::Index(i), _) if *i < width => Ok(*i),
        (LabelColumn::Index(i), _) => Err(DataError::parse(
            path,
            first_line,
            format!(
                "label_column = {i}, but the file has {width} columns (indices 0 to {})",
                width - 1
            ),
        )),
        (LabelColumn::Name(name), Some(names)) => {
            let mut matches = names.iter().enumerate().filter(|&(_, &n)| n == name);
            match (matches.next(), matches.next()) {
                (Some((i, _)), None) => Ok(i),
                (Some((i, _)), Some((k, _))) => Err(DataError::parse(
                    path,
                    first_line,
                    format!(
                        "label_column \"{name}\" is ambiguous: columns {i} and {k} share that name"
                    ),
                )),
                (None, _) => Err(DataError::parse(
                    path,
                    first_line,
                    format!(
                        "no column named \"{name}\" in the header ({})",
                        preview(names)
                    ),
                )),
            }
        }
        (LabelColumn::Name(name), None) => Err(DataError::Invalid {
            field: "label_column",
            reason: format!(
                "\"{name}\" names a column, but {path} is read without a header; give a 0-based index"
            ),
        }),
    }
}

/// The first few column names, for an error message.
fn preview(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    let quoted: Vec<String> = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("\"{n}\""))
        .collect();
    let more = names.len().saturating_sub(SHOWN);
    if more == 0 {
        format!("columns: {}", quoted.join(", "))
    } else {
        format!("columns: {}, and {more} more", quoted.join(", "))
    }
}

/// A field without surrounding whitespace and one pair of surrounding double quotes.
fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .map_or(field, str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(text: &str, options: &CsvOptions) -> Result<Dataset, DataError> {
        parse(text, "data.csv", options)
    }

    fn error(text: &str, options: &CsvOptions) -> String {
        parse_with(text, options).unwrap_err().to_string()
    }

    fn labels(data: &Dataset) -> (&[usize], usize) {
        match &data.targets {
            Targets::Classes { labels, classes } => (labels, *classes),
            Targets::Regression(_) => panic!("classification expected"),
        }
    }

    #[test]
    fn reads_the_label_column_by_default_wherever_it_is() {
        let data = parse_with("a,label,b\n1,2,3\n4,0,6\n", &CsvOptions::default()).unwrap();
        assert_eq!(data.features, ndarray::array![[1.0, 3.0], [4.0, 6.0]]);
        assert_eq!(labels(&data), (&[2, 0][..], 3));
    }

    #[test]
    fn falls_back_to_the_last_column_without_a_label_header() {
        let data = parse_with("x,y,class\n0.5,1,1\n2,3,0\n", &CsvOptions::default()).unwrap();
        assert_eq!(data.features, ndarray::array![[0.5, 1.0], [2.0, 3.0]]);
        assert_eq!(labels(&data), (&[1, 0][..], 2));
    }

    #[test]
    fn selects_the_label_column_by_name_or_index() {
        let text = "y,x1,x2\n1,2,3\n0,5,6\n";
        let by_name = CsvOptions {
            label_column: LabelColumn::from_spec(Some("y")),
            ..CsvOptions::default()
        };
        let by_index = CsvOptions {
            label_column: LabelColumn::from_spec(Some("0")),
            ..CsvOptions::default()
        };
        let a = parse_with(text, &by_name).unwrap();
        assert_eq!(a, parse_with(text, &by_index).unwrap());
        assert_eq!(a.features, ndarray::array![[2.0, 3.0], [5.0, 6.0]]);
        assert_eq!(labels(&a), (&[1, 0][..], 2));
        assert_eq!(LabelColumn::from_spec(Some("2")), LabelColumn::Index(2));
        assert_eq!(LabelColumn::from_spec(None), LabelColumn::Default);
    }

    #[test]
    fn reads_files_without_a_header_and_regression_targets() {
        let options = CsvOptions {
            header: false,
            task: TaskKind::Regression,
            ..CsvOptions::default()
        };
        let data = parse_with("1,2,0.25\r\n\r\n3,4,-1.5\r\n", &options).unwrap();
        assert_eq!(data.features, ndarray::array![[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(
            data.targets,
            Targets::Regression(ndarray::array![[0.25], [-1.5]])
        );
    }

    #[test]
    fn tolerates_quotes_spaces_and_a_byte_order_mark() {
        let data = parse_with(
            "\u{feff}\"f\", \"label\"\n \"1.5\" , 1\n",
            &CsvOptions::default(),
        )
        .unwrap();
        assert_eq!(data.features, ndarray::array![[1.5]]);
        assert_eq!(labels(&data), (&[1][..], 2));
    }

    #[test]
    fn refuses_empty_files() {
        let options = CsvOptions::default();
        assert_eq!(
            error("", &options),
            "data.csv:0: empty file: expected a header line"
        );
        assert_eq!(
            error("\n  \n", &options),
            "data.csv:0: empty file: expected a header line"
        );
        assert_eq!(
            error("a,label\n", &options),
            "data.csv:0: no data rows after the header"
        );
        let no_header = CsvOptions {
            header: false,
            ..options
        };
        assert_eq!(
            error("", &no_header),
            "data.csv:0: empty file: no data rows"
        );
    }

    #[test]
    fn refuses_ragged_rows_with_file_and_line() {
        let err = error("a,b,label\n1,2,0\n\n3,4\n", &CsvOptions::default());
        assert_eq!(err, "data.csv:4: expected 3 fields, as on line 1, got 2");
    }

    #[test]
    fn refuses_non_numbers_quoting_the_field_and_column() {
        let err = error("a,b,label\n1,2,0\n3,x7,1\n", &CsvOptions::default());
        assert_eq!(
            err,
            "data.csv:3: column 1 (\"b\"): expected a number, got \"x7\""
        );
        let no_header = CsvOptions {
            header: false,
            ..CsvOptions::default()
        };
        let err = error("1,2,0\n3,4,1\nnan,5,1\n", &no_header);
        assert_eq!(
            err,
            "data.csv:3: column 0: expected a finite number, got \"nan\""
        );
    }

    #[test]
    fn refuses_negative_and_fractional_class_labels_with_the_line() {
        let err = error("a,label\n1,0\n2,-1\n", &CsvOptions::default());
        assert!(
            err.starts_with(
                "data.csv:3: column 1 (\"label\"): expected a class label 0, 1, 2, ..., got \"-1\""
            ),
            "{err}"
        );
        let err = error("a,label\n1,2.5\n", &CsvOptions::default());
        assert!(err.starts_with("data.csv:2: "), "{err}");
        assert!(
            err.contains("got \"2.5\" (set task = \"regression\""),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_missing_or_ambiguous_label_column() {
        let by_name = |name: &str| CsvOptions {
            label_column: LabelColumn::Name(name.to_string()),
            ..CsvOptions::default()
        };
        assert_eq!(
            error("a,b\n1,2\n", &by_name("target")),
            "data.csv:1: no column named \"target\" in the header (columns: \"a\", \"b\")"
        );
        assert_eq!(
            error("y,a,y\n1,2,3\n", &by_name("y")),
            "data.csv:1: label_column \"y\" is ambiguous: columns 0 and 2 share that name"
        );
        let by_index = CsvOptions {
            label_column: LabelColumn::Index(5),
            ..CsvOptions::default()
        };
        assert_eq!(
            error("a,b\n1,2\n", &by_index),
            "data.csv:1: label_column = 5, but the file has 2 columns (indices 0 to 1)"
        );
        let headerless = CsvOptions {
            header: false,
            ..by_name("y")
        };
        assert_eq!(
            error("1,2\n", &headerless),
            "data.label_column: \"y\" names a column, but data.csv is read without a header; give a 0-based index"
        );
        assert_eq!(
            error("label\n1\n", &CsvOptions::default()),
            "data.csv:1: expected at least 2 columns (features and a label), got 1"
        );
    }
}
