"""The replayed torso layer: the frame's neck and torso, carried up under the chin so a dub's jaw never uncovers
the empty background, and the hair the labels cut, faded in over the head."""

from __future__ import annotations

import numpy as np

from instag.render.plate import HAIR_BAND, NECK_EDGE, NECK_REACH, UNDER, over_head, over_plate, torso_layer

BG, FACE, LIPS, HAIR, TORSO = 0, 1, 2, 4, 5
S = 100


def scene() -> tuple[np.ndarray, np.ndarray]:
    """A face (rows 10–49, columns 30–69) with lips, on a neck (rows 50–69, columns 40–59) over shoulders (rows
    70–99, every column); hair beside the neck in columns 60–64. Colours: neck rows 50–52 dark (the chin's
    shadow), the rest of the neck skin-coloured by column."""
    label = np.full((S, S), BG, np.uint8)
    label[10:50, 30:70] = FACE
    label[40:44, 45:55] = LIPS
    label[50:70, 40:60] = TORSO
    label[50:70, 60:65] = HAIR
    label[70:, :] = TORSO
    frame = np.zeros((S, S, 3), np.uint8)
    frame[..., 0] = 20  # background, face
    frame[50:70, 40:60] = np.stack([np.full(20, 200), np.arange(100, 120), np.full(20, 90)], -1)
    frame[50:50 + NECK_EDGE, 40:60] = (30, 20, 20)  # the chin's shadow at the top of the neck label
    frame[70:] = (5, 5, 5)  # a dark shirt
    return frame, label


def test_without_chin_labels_the_layer_is_the_neck_and_torso():
    frame, label = scene()
    layer = torso_layer(frame, label, TORSO)
    assert np.array_equal(layer[..., 3] == 255, label == TORSO)
    assert np.array_equal(layer[..., :3], frame)


def test_the_neck_is_carried_up_under_the_chin_only():
    frame, label = scene()
    layer = torso_layer(frame, label, TORSO, (FACE, LIPS))
    reach = round(NECK_REACH * S)
    below_edge = frame[50 + NECK_EDGE + 1, 40:60]  # each neck column's colour below its shadowed rows
    # Under the chin: opaque, the column's own neck colour, from the shadowed top rows up `reach` rows.
    for row in range(50 - reach, 50 + NECK_EDGE + 1):
        assert (layer[row, 40:60, 3] == 255).all(), row
        assert np.array_equal(layer[row, 40:60, :3], below_edge), row
    # No further up, nowhere beside the neck (face over background, hair), and not above the shoulders.
    assert (layer[:50 - reach, :, 3] == 0).all()
    assert (layer[:50, :40, 3] == 0).all() and (layer[:70, 60:, 3] == 0).all()
    # The torso below the edge rows is the frame's, untouched.
    torso = label == TORSO
    torso[50:50 + NECK_EDGE + 1] = False
    assert np.array_equal(layer[torso][:, :3], frame[torso])


def test_over_plate_shows_the_carried_neck_where_no_head_is_drawn():
    frame, label = scene()
    plate = np.full((S, S, 3), 255, np.uint8)  # an empty, white background
    row = 50 - round(NECK_REACH * S) // 2  # a row of the chin a dub's higher jaw would leave uncovered
    assert (over_plate(plate, torso_layer(frame, label, TORSO))[row, 40:60] == 255).all()
    shown = over_plate(plate, torso_layer(frame, label, TORSO, (FACE, LIPS)))[row, 40:60]
    assert np.array_equal(shown, frame[50 + NECK_EDGE + 1, 40:60])


def test_the_hair_cut_by_the_labels_fades_in_over_the_head():
    frame, label = scene()
    plain = torso_layer(frame, label, TORSO, (FACE, LIPS))
    layer = torso_layer(frame, label, TORSO, (FACE, LIPS), HAIR)
    reach = round(HAIR_BAND * S)
    band = (layer[..., 3] > 0) & (layer[..., 3] < UNDER)
    # Only the hair beside the neck (columns 60-64) meets the shoulders' torso, at row 70; not the face above the
    # neck, nor the background beside the shoulders.
    expected = np.zeros((S, S), bool)
    expected[70 - reach:70, 60:65] = True
    assert np.array_equal(band, expected)
    weights = layer[70 - reach:70, 60, 3].astype(int)
    assert (np.diff(weights) > 0).all() and weights[-1] > 200 and weights[0] < 60  # fading out upwards
    assert np.array_equal(layer[band][:, :3], frame[band])  # the clip's own hair
    assert np.array_equal(layer[~band], plain[~band])  # the rest as without it
    over = over_head(layer)
    assert np.array_equal(over[..., 3] > 0, band) and np.array_equal(over[band], layer[band])
    assert over_head(plain) is None
    plate = np.full((S, S, 3), 255, np.uint8)
    assert np.array_equal(over_plate(plate, layer), over_plate(plate, plain))  # nothing of it under the head
