use super::*;

#[test]
fn intern_gives_dense_ids_in_first_use_order_and_checks_all_names_first() {
    let d = FeatureDictionary::default();
    assert_eq!(d.intern(["b", "a", "b"]).unwrap(), vec![0, 1, 0]);
    assert_eq!(
        d.intern(["a", "新しい", "brand:acme"]).unwrap(),
        vec![1, 2, 3]
    );
    assert_eq!(d.len(), 4);
    // One bad name: nothing is added.
    let long = "x".repeat(MAX_FEATURE_NAME_BYTES + 1);
    assert!(d.intern(["fresh", long.as_str()]).is_err());
    assert!(d.intern(["fresh", ""]).is_err());
    assert_eq!(d.len(), 4);
    assert_eq!(d.id_below("fresh", u32::MAX), None);
    assert_eq!(d.id_below("brand:acme", 4), Some(3));
    assert_eq!(d.id_below("brand:acme", 3), None);
    assert_eq!(d.name(2).as_deref(), Some("新しい"));
    d.truncate(2);
    assert_eq!(d.len(), 2);
    assert_eq!(d.id_below("新しい", u32::MAX), None);
    assert_eq!(d.intern(["c"]).unwrap(), vec![2]);
}

#[test]
fn file_round_trips_and_rejects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = [
        "##ing",
        "##ings",
        "##in",
        "é",
        "tok77",
        "brand:acme",
        "名前",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..1000).map(|i| format!("feature-{i}")))
    .collect();
    let d = FeatureDictionary::from_names(names.clone()).unwrap();
    let bytes = file::encode(&d.names_from(0));
    let path = dir.path().join(file::dict_file(3));
    std::fs::write(&path, &bytes).unwrap();
    let back = file::load(&path, names.len() as u32).unwrap();
    let got: Vec<String> = back.names_from(0).iter().map(|s| s.to_string()).collect();
    assert_eq!(got, names);
    assert!(file::load(&path, names.len() as u32 + 1).is_err());
    for i in [0, 20, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        assert!(
            file::load(&path, names.len() as u32).is_err(),
            "flip at {i}"
        );
    }
    // Front coding pays on a real-looking vocabulary.
    let raw: usize = names.iter().map(|n| n.len() + 1).sum();
    assert!(bytes.len() < raw, "{} vs {raw}", bytes.len());
}

#[test]
fn duplicate_names_in_a_file_are_corruption() {
    assert!(FeatureDictionary::from_names(vec!["a".into(), "a".into()]).is_err());
}
